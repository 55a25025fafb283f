"""The one place that imports unitree_sdk2py (Unitree's Python SDK over Cyclone DDS).

Why this module exists: PyPI `unitree-sdk2` 1.0.1 cannot be installed or imported as shipped on
Python 3.11:
  * it pins cyclonedds==0.10.2, which has no cp311 wheel, so the project installs
    cyclonedds==11.0.1 (requirements.txt) and then `pip install --no-deps unitree-sdk2==1.0.1`
    (Makefile `venv` target; pip cannot express --no-deps inside requirements.txt);
  * its top-level __init__ does `from . import ..., b2` but the wheel ships no `b2` package,
    which fails as a circular import. We register an empty `unitree_sdk2py.b2` module before the
    first import; the Go2 code paths never touch b2.
Everything else imports the SDK through `load()` so the workaround stays here.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

INSTALL_HINT = ("install it with: .venv/bin/pip install cyclonedds==11.0.1 && "
                ".venv/bin/pip install --no-deps unitree-sdk2==1.0.1 (what `make venv` does)")

# Return codes of unitree_sdk2py (rpc/internal.py, go2/sport/sport_api.py), by name.
RETURN_CODES: dict[int, str] = {
    0: "OK",
    3001: "RPC_ERR_UNKNOWN",
    3102: "RPC_ERR_CLIENT_SEND",  # nobody subscribed the request topic within the timeout (no robot)
    3103: "RPC_ERR_CLIENT_API_NOT_REG",
    3104: "RPC_ERR_CLIENT_API_TIMEOUT",  # request sent, no response within the timeout
    3105: "RPC_ERR_CLIENT_API_NOT_MATCH",
    3106: "RPC_ERR_CLIENT_API_DATA",
    3107: "RPC_ERR_CLIENT_LEASE_INVALID",
    3201: "RPC_ERR_SERVER_SEND",
    3202: "RPC_ERR_SERVER_INTERNAL",
    3203: "RPC_ERR_SERVER_API_NOT_IMPL",
    3204: "RPC_ERR_SERVER_API_PARAMETER",
    3205: "RPC_ERR_SERVER_LEASE_DENIED",
    3206: "RPC_ERR_SERVER_LEASE_NOT_EXIST",
    3207: "RPC_ERR_SERVER_LEASE_EXIST",
    4101: "SPORT_ERR_CLIENT_POINT_PATH",
    4201: "SPORT_ERR_SERVER_OVERTIME",
    4202: "SPORT_ERR_SERVER_NOT_INIT",
}


RPC_ERR_CLIENT_SEND, RPC_ERR_CLIENT_API_TIMEOUT, RPC_ERR_SERVER_API_PARAMETER = 3102, 3104, 3204
# The RPC framework's own request (unitree_sdk2py rpc/internal.py RPC_API_ID_INTERNAL_API_VERSION): every
# Server answers it itself, without touching the robot, which makes it the harmless request-reply probe.
API_ID_API_VERSION = 1


def code_name(code: int) -> str:
    """'3102 RPC_ERR_CLIENT_SEND'; unknown codes keep their number ('1234 UNKNOWN_CODE')."""
    return f"{code} {RETURN_CODES.get(code, 'UNKNOWN_CODE')}"


class SdkUnavailable(ImportError):
    """unitree_sdk2py (or its cyclonedds) is not installed or does not import."""


def load() -> types.SimpleNamespace:
    """Import the SDK pieces the project uses; raises SdkUnavailable with the install command."""
    if "unitree_sdk2py" not in sys.modules and "unitree_sdk2py.b2" not in sys.modules:
        # The empty stand-in for the b2 sub-package the wheel forgot (see the module docstring).
        sys.modules["unitree_sdk2py.b2"] = types.ModuleType("unitree_sdk2py.b2")
    try:
        channel = importlib.import_module("unitree_sdk2py.core.channel")
        sport_client = importlib.import_module("unitree_sdk2py.go2.sport.sport_client")
        sport_api = importlib.import_module("unitree_sdk2py.go2.sport.sport_api")
        rpc_server = importlib.import_module("unitree_sdk2py.rpc.server")
        go_msgs = importlib.import_module("unitree_sdk2py.idl.unitree_go.msg.dds_")
        api_msgs = importlib.import_module("unitree_sdk2py.idl.unitree_api.msg.dds_")
        defaults = importlib.import_module("unitree_sdk2py.idl.default")
    except ImportError as error:
        raise SdkUnavailable(f"unitree_sdk2py does not import ({error}); {INSTALL_HINT}") from error
    return types.SimpleNamespace(
        ChannelFactoryInitialize=channel.ChannelFactoryInitialize,
        ChannelPublisher=channel.ChannelPublisher,
        ChannelSubscriber=channel.ChannelSubscriber,
        SportClient=sport_client.SportClient,
        Server=rpc_server.Server,
        sport_api=sport_api,
        SportModeState_=go_msgs.SportModeState_,
        Request_=api_msgs.Request_,
        default_sport_mode_state=defaults.unitree_go_msg_dds__SportModeState_,
    )


_initialised: dict[str, Any] = {}


def init_channels(domain_id: int, interface: str) -> types.SimpleNamespace:
    """ChannelFactoryInitialize(domain_id, interface) once per process.

    The SDK's channel factory is a process-wide singleton that silently keeps the first domain:
    asking for another one later is an error here instead of a robot on the wrong network.
    """
    sdk = load()
    wanted = {"domain_id": int(domain_id), "interface": interface}
    if _initialised:
        if _initialised != wanted:
            raise RuntimeError(f"unitree channels already initialised with {_initialised} in this process; "
                               f"cannot switch to {wanted}")
        return sdk
    try:
        sdk.ChannelFactoryInitialize(int(domain_id), interface)
    except Exception as error:  # the SDK raises a bare Exception("channel factory init error.")
        raise RuntimeError(f"unitree channel init failed on interface {interface!r}, domain {domain_id}: "
                           f"{error}") from error
    _initialised.update(wanted)
    return sdk
