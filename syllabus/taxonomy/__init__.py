"""The taxonomy: a tree of fields, subfields and disciplines kept as folders of YAML.

It imports nothing else of the project, so people and tools can use it on its own:

    from syllabus.taxonomy import Taxonomy
    tax = Taxonomy.load("taxonomy")
    for node in tax.disciplines():
        print(node.path, node.description)
"""

from .model import KINDS, SCHEMA_VERSION, Node, Seed, slugify
from .store import Taxonomy, TaxonomyInvalid
from .validate import Issue, validate_tree

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Issue",
    "Node",
    "Seed",
    "Taxonomy",
    "TaxonomyInvalid",
    "slugify",
    "validate_tree",
]
