"""Policies by name, imported lazily so picking `scripted` never imports torch.

Add a policy: a sub-package with a config dataclass and a Policy subclass, and one line here.
"""
from __future__ import annotations

import importlib
from typing import Any

from sparsevideonav_ros.configs import ConfigError, build_config
from sparsevideonav_ros.policies.base import Policy

# name -> "module:Class" of the Policy subclass
POLICIES: dict[str, str] = {
    "scripted": "sparsevideonav_ros.policies.scripted.policy:ScriptedPolicy",
    "sparsevideonav": "sparsevideonav_ros.policies.sparsevideonav.policy:SparseVideoNavPolicy",
    "janusvln": "sparsevideonav_ros.policies.janusvln.policy:JanusVLNPolicy",
}


class UnknownPolicyError(ConfigError):
    pass


def known_policies() -> list[str]:
    return sorted(POLICIES)


def policy_class(name: str) -> type[Policy]:
    if name not in POLICIES:
        raise UnknownPolicyError(f"unknown policy {name!r}; known policies: {', '.join(known_policies())}")
    module_name, class_name = POLICIES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def config_class(name: str) -> type:
    return policy_class(name).config_class


def make_policy(name: str, values: dict[str, Any] | None = None) -> Policy:
    """Instantiate policy ``name`` with config values (missing ones take their defaults)."""
    cls = policy_class(name)
    return cls(build_config(cls.config_class, values or {}))
