"""Comparators for the serving benchmark; not part of the product."""
