"""Who may do what: workspaces and users, sessions, API tokens, OAuth, scopes and workspace
policy, single sign-on, SCIM, ID-JAG and the approval of members' apps."""
