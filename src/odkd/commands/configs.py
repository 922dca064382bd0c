"""``odkd configs``: list the configs shipped with odkd (usable by name)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("configs", help="list the shipped configs (usable by name)",
                       description="List the YAML configs shipped with odkd: pass the name to "
                                   "`odkd train` / `odkd distill` (train configs) or "
                                   "`odkd experiment` / `odkd demo --config` (experiments).")
    p.set_defaults(func=run)


def run(args) -> int:
    from odkd.config import shipped_config_dir, shipped_configs

    rows = shipped_configs()
    width = max(len(name) for name, _, _ in rows)
    for name, command, about in rows:
        print(f"{name:<{width}}  odkd {command:<10}  {about}")
    print(f"(files in {shipped_config_dir()})")
    return 0
