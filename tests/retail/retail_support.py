"""The retail plugin on a small generated interaction log (seconds to train), for the tests."""

from __future__ import annotations

from verticals.testing.ranking import make_interactions
from verticals_retail.plugin import RetailPlugin

NAME = "retail.movielens"
USERS = 300
ITEMS = 80  # 5 clusters x 16 items
LIST = 30   # the exported list length (top_k), below the catalogue so --k has two bounds


def small_log(users: int = USERS, seed: int = 0):
    return make_interactions(users, seed=seed)


def small_plugin(users: int = USERS, seed: int = 0, **options) -> RetailPlugin:
    frame = small_log(users, seed)
    options = {"top_k": LIST, "ease_lambdas": (10.0, 100.0), **options}
    return RetailPlugin(lambda: frame.lazy(), description="generated interactions", source="tests", **options)
