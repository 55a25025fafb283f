"""Every topic and service the nodes create (nodes/*.py, read as source) is in stack.TOPICS /
stack.SERVICES with its type, QoS profiles and role, and every role stack.py names is created.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path
from typing import Optional

import pytest

from stack_helpers import NODES_DIR
from sparsevideonav_ros import stack

# Global topics a node may use without a stack.TOPICS entry (absolute names, ROS conventions).
EXTERNAL_TOPICS = {name: msg_type for name, (msg_type, _qos) in stack.TF_TOPICS.items()}  # /tf, /tf_static


@dataclasses.dataclass
class Endpoint:
    node: str
    kind: str  # publisher | subscription | service
    name: Optional[str]  # None: not a string literal
    interface: Optional[str]  # "pkg/msg/Type" from the module's imports, None when unknown
    local_type: Optional[str]
    qos_topic: Optional[str]  # the topic whose QoS it uses: the literal in common.topic_qos("..."), or common.subscribe's
    profiles: tuple[str, ...]  # stack QoS profiles it is created with (common.subscribe: one subscription each)
    line: int


# method -> (kind, position of the type argument, position of the QoS argument or None)
CREATE_CALLS = {"create_publisher": ("publisher", 0, 2), "create_subscription": ("subscription", 0, 3),
                "create_service": ("service", 0, None),
                # common.subscribe(self, Type, "topic", callback[, callback_group=...]): one subscription per
                # profile of stack.TOPICS[topic].subscription_profiles, so its QoS is the stack's by construction
                "subscribe": ("subscription", 1, None)}


def is_create_call(call: ast.AST) -> bool:
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in CREATE_CALLS):
        return False
    if call.func.attr == "subscribe":  # only ours, not some other object's subscribe()
        return isinstance(call.func.value, ast.Name) and call.func.value.id == "common"
    return True


def scan_node_module(path: Path) -> tuple[str, list[Endpoint]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: dict[str, str] = {}
    node_name = None
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module:
            match = re.fullmatch(r"(\w+)\.(msg|srv)", statement.module)
            if match:
                for alias in statement.names:
                    imports[alias.asname or alias.name] = f"{match.group(1)}/{match.group(2)}/{alias.name}"
        elif isinstance(statement, ast.Try):  # optional imports (tf2_msgs)
            for inner in statement.body:
                if isinstance(inner, ast.ImportFrom) and inner.module and re.fullmatch(r"\w+\.(msg|srv)", inner.module):
                    package, kind = inner.module.split(".")
                    for alias in inner.names:
                        imports[alias.asname or alias.name] = f"{package}/{kind}/{alias.name}"
        elif (isinstance(statement, ast.Assign) and len(statement.targets) == 1
              and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "NAME"):
            node_name = ast.literal_eval(statement.value)
    endpoints = []
    for call in ast.walk(tree):
        if not is_create_call(call):
            continue
        kind, type_index, qos_index = CREATE_CALLS[call.func.attr]
        keywords = {k.arg: k.value for k in call.keywords}
        type_node = (call.args[type_index] if len(call.args) > type_index
                     else keywords.get("msg_type", keywords.get("srv_type")))
        name_node = (call.args[type_index + 1] if len(call.args) > type_index + 1
                     else keywords.get("topic", keywords.get("srv_name")))
        name = name_node.value if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) else None
        local_type = type_node.id if isinstance(type_node, ast.Name) else None
        qos_topic, profiles = None, ()
        if call.func.attr == "subscribe":
            qos_topic = name
            profiles = stack.TOPICS[name].subscription_profiles if name in stack.TOPICS else ()
        elif qos_index is not None:
            qos_node = call.args[qos_index] if len(call.args) > qos_index else keywords.get("qos_profile")
            if (isinstance(qos_node, ast.Call) and isinstance(qos_node.func, ast.Attribute)
                    and qos_node.func.attr == "topic_qos" and qos_node.args
                    and isinstance(qos_node.args[0], ast.Constant)):
                qos_topic = qos_node.args[0].value
                profiles = (stack.TOPICS[qos_topic].qos,) if qos_topic in stack.TOPICS else ()
        endpoints.append(Endpoint(node=node_name, kind=kind, name=name, interface=imports.get(local_type),
                                  local_type=local_type, qos_topic=qos_topic, profiles=profiles, line=call.lineno))
    return node_name, endpoints


def node_modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(NODES_DIR.glob("*.py")) if path.stem in stack.NODES}


def import_interface(interface: str):
    package, kind, name = interface.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def test_every_node_has_a_module():
    assert set(node_modules()) == set(stack.NODES)


@pytest.mark.parametrize("module_name", sorted(stack.NODES))
def test_node_topics_and_services_are_in_the_stack(module_name):
    path = node_modules()[module_name]
    node_name, endpoints = scan_node_module(path)
    assert node_name == module_name, f"{path.name}: NAME = {node_name!r}"
    assert endpoints, f"{path.name} creates no topics"
    module = importlib.import_module(stack.NODES[module_name].module)
    for endpoint in endpoints:
        where = f"{path.name}:{endpoint.line}"
        assert endpoint.name is not None, f"{where}: topic/service names must be string literals from stack.py"
        assert endpoint.interface is not None, f"{where}: type {endpoint.local_type!r} not imported from a msg/srv"
        if endpoint.kind == "service":
            assert endpoint.name in stack.SERVICES, f"{where}: service {endpoint.name!r} missing from stack.SERVICES"
            service = stack.SERVICES[endpoint.name]
            assert endpoint.interface == service.srv_type, where
            assert service.server == node_name, where
            declared_type = service.srv_type
        elif endpoint.name in EXTERNAL_TOPICS:
            assert endpoint.interface == EXTERNAL_TOPICS[endpoint.name], where
            continue  # optional dependency (tf2_msgs), not a stack topic
        else:
            assert endpoint.name in stack.TOPICS, f"{where}: topic {endpoint.name!r} missing from stack.TOPICS"
            topic = stack.TOPICS[endpoint.name]
            assert endpoint.interface == topic.msg_type, f"{where}: {endpoint.interface} vs {topic.msg_type}"
            assert endpoint.qos_topic == endpoint.name, f"{where}: QoS must be common.topic_qos({endpoint.name!r})"
            # A user-facing input subscribed with its publisher profile alone (create_subscription + topic_qos)
            # would miss the publishers of other QoS (a latched reader never matches `ros2 topic pub` on Jazzy).
            expected = (topic.qos,) if endpoint.kind == "publisher" else topic.subscription_profiles
            assert endpoint.profiles == expected, (
                f"{where}: {endpoint.kind} of {endpoint.name!r} with QoS {endpoint.profiles}, stack.TOPICS says "
                f"{expected}" + (f"; subscribe it with common.subscribe(self, {endpoint.local_type}, "
                                 f"{endpoint.name!r}, callback)" if endpoint.kind == "subscription" else ""))
            role = topic.publishers if endpoint.kind == "publisher" else topic.subscribers
            assert node_name in role, f"{where}: stack.TOPICS[{endpoint.name!r}] does not list {node_name} " \
                                      f"as a {endpoint.kind}"
            declared_type = topic.msg_type
        # the type named in stack.py imports, and is the very class the node uses
        assert import_interface(declared_type) is getattr(module, endpoint.local_type), where


def test_stack_roles_are_implemented_by_the_nodes():
    """Reverse direction: a publisher/subscriber/server that stack.py names exists in the code."""
    created = set()
    for path in node_modules().values():
        node_name, endpoints = scan_node_module(path)
        created |= {(node_name, e.kind, e.name) for e in endpoints}
    for topic in stack.TOPICS.values():
        assert topic.qos in stack.QOS_PROFILES, topic.name
        assert topic.subscription_profiles and set(topic.subscription_profiles) <= set(stack.QOS_PROFILES), topic.name
        assert not topic.name.startswith("/"), f"{topic.name}: stack topics are relative (namespaced)"
        import_interface(topic.msg_type)
        for node in topic.publishers:
            assert (node, "publisher", topic.name) in created, (topic.name, node)
        for node in topic.subscribers:
            assert (node, "subscription", topic.name) in created, (topic.name, node)
    for service in stack.SERVICES.values():
        import_interface(service.srv_type)
        assert (service.server, "service", service.name) in created, service.name
