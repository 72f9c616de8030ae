"""Network definitions. State-dict layouts follow the reference implementation exactly."""
