"""Model directories on disk: checksummed files, versions with rollback, signed publication."""
