"""Print the memory plan of a policy configuration, without a GPU and without loading weights.

    python -m sparsevideonav_ros.tools.memory_plan --params-file params/policy.yaml --policy janusvln \\
        --device cuda --device-memory-gb 24 [--released-sizes] [--set janusvln.quantization=int8 ...]

Reads policy_node's block of the params file (the policy's `<policy>.*` parameters), applies --device and every
--set, builds the model on the meta device from the checkpoint's configs ('tiny': the tiny model's; with
--released-sizes: the published sizes, no checkpoint needed) and prints the bytes of every part on every device
(policies/memory_plan.py), compared with --device-memory-gb (GiB; else the free memory torch reports on CUDA).
Exit 0: fits (or nothing to compare with); 1: does not fit (the plan says which settings would); 2: bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

PACKAGE_PARAMS = Path(__file__).resolve().parents[2] / "params" / "policy.yaml"


def policy_config(parameters: dict[str, Any], policy: str, device: Optional[str], overrides: list[str]):
    import yaml

    from sparsevideonav_ros.configs import build_config
    from sparsevideonav_ros.policies import registry

    values = dict(parameters.get(policy) or {})
    if device:
        values["device"] = device
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. {policy}.quantization=int8")
        key = key.strip()
        if key.startswith(f"{policy}."):
            key = key[len(policy) + 1:]
        elif "." in key:
            raise ValueError(f"--set {item!r}: only {policy}.* parameters apply to this plan")
        values[key] = yaml.safe_load(text)
    return build_config(registry.config_class(policy), values)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params-file", type=Path, default=PACKAGE_PARAMS,
                        help="params YAML with a policy_node block (default: the package's params/policy.yaml)")
    parser.add_argument("--policy", help="janusvln or sparsevideonav (default: the file's `policy`)")
    parser.add_argument("--device", help="override <policy>.device (e.g. cuda)")
    parser.add_argument("--device-memory-gb", type=float, help="free memory of the device in GiB (2^30 bytes); "
                        "default: torch.cuda.mem_get_info when CUDA is there")
    parser.add_argument("--released-sizes", action="store_true",
                        help="plan for the published model sizes instead of the checkpoint's configs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a policy parameter, e.g. janusvln.quantization=int8 (repeatable)")
    parser.add_argument("--camera", default="640x480", help="camera frame size WxH planned for (default 640x480)")
    args = parser.parse_args(argv)
    try:
        from sparsevideonav_ros.configs import ConfigError
        from sparsevideonav_ros.policies import memory_plan

        from sparsevideonav_ros.tools.evaluate import policy_node_parameters
        parameters = policy_node_parameters(args.params_file)
        policy = args.policy or str(parameters.get("policy", ""))
        if policy not in ("janusvln", "sparsevideonav"):
            raise ValueError(f"policy {policy!r} has no memory plan: give --policy janusvln or sparsevideonav")
        width, _, height = args.camera.lower().partition("x")
        try:
            camera = (int(height), int(width))
        except ValueError:
            raise ValueError(f"--camera {args.camera!r}: expected WxH, e.g. 640x480") from None
        if args.device_memory_gb is not None and not args.device_memory_gb > 0:
            raise ValueError(f"--device-memory-gb must be > 0, got {args.device_memory_gb:g}")
        config = policy_config(parameters, policy, args.device, args.set)
        plan = memory_plan.plan_for(policy, config, args.device_memory_gb, args.released_sizes, camera)
    except (ValueError, ConfigError, memory_plan.MemoryPlanError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(plan.table())
    return 1 if plan.fits is False else 0


if __name__ == "__main__":
    sys.exit(main())
