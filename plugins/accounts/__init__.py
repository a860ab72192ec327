"""The accounts tool pack: companies a sales team works with, searchable, with a profile that
gathers what every pack in the caller's scope knows about one account."""
