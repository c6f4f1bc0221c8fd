"""The teacher side: cached requests, the GLAN stages, parsers and dataset writing."""
