"""Who may do what: the action table, role assignments, and the one decision point every route calls."""
