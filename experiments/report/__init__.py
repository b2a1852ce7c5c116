"""Reading a result folder back: the report (`render`), plots and `bandits compare`."""
