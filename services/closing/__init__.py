"""The closing service."""
