"""Database plumbing shared by every app: connection tuning, prepared reads, SQL files."""
