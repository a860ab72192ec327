"""The revenue tool pack: opportunities per account, pipeline and won revenue summaries."""
