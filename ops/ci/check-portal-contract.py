#!/usr/bin/env python3
"""Check the portal's GraphQL schema against every fixed part of the contract.

    cvm-portal schema | ops/ci/check-portal-contract.py

`../shared/tools/check-portal-schema --campaigns` checks the contract's first
two graphql blocks (surveys, campaigns); the privacy block that came later
(`extend type Customer`, `extend type Mutation`) it does not read. This
builds the contract from all of the blocks of ../shared/docs/portal-api.md
and compares with that tool's own comparison, so both checks agree on what
a difference is. Exit 0 when nothing is missing.
"""
import importlib.machinery
import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
TOOL = os.path.join(SHARED, "tools", "check-portal-schema")
DOC = os.path.join(SHARED, "docs", "portal-api.md")


def load_tool():
    loader = importlib.machinery.SourceFileLoader("check_portal_schema", TOOL)
    spec = importlib.util.spec_from_loader("check_portal_schema", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main():
    tool = load_tool()
    import graphql

    text = sys.stdin.read()
    if not text.strip():
        sys.exit("check-portal-contract: no SDL on standard input")
    portal = graphql.build_schema(text)
    blocks = re.findall(r"```graphql\n(.*?)```", open(DOC).read(), re.S)
    if len(blocks) < 3:
        sys.exit(f"check-portal-contract: {DOC} has {len(blocks)} graphql blocks, expected 3")
    contract = tool.build("\n".join(blocks) + tool.EXTRA_SDL)
    probs = tool.schema_differences(contract, portal)
    for p in probs:
        print(p)
    if probs:
        print(f"{len(probs)} difference(s) from the contract (all {len(blocks)} blocks)")
        sys.exit(1)
    print(f"the schema has the contract's fixed part (all {len(blocks)} blocks: surveys, campaigns, privacy)")


if __name__ == "__main__":
    main()
