"""What every room shares: field access, bounded maps, private files, HTTP retry, the spool."""
