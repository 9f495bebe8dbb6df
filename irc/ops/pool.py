"""Pool ops."""
