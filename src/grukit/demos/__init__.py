"""Small, self-contained demonstrations run by ``grukit demo``."""
