"""Library-level jobs that wire the layers together; each CLI command is a few lines over one of these."""
