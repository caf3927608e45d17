"""Client of the Payment Service, its sandbox provider and webhook signing (DESIGN.md §7)."""
