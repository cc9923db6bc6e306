"""Evaluates the Pulumi program under Pulumi's mock runtime (no cloud, no CLI) and records what it registers.

Each record holds the type token, logical name, URN, parent URN, the inputs exactly as they would reach the
provider (camelCased keys, numbers as floats), the provider reference it was registered with and the options that
matter for safety (protect, retain-on-delete, ignore-changes). The unit tests, the policy pack and the lab all evaluate
the program through `evaluate`; a StackReference answers with `references[name]` (default: a primary in us-east-1).
Only the SDK's public runtime API is used (set_mocks, reset_options, register_stack_transformation, test).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
import pulumi.runtime

from components.topology import build_topology
from drtopo.settings import PROJECT, Settings

ACCOUNT_ID = "123456789012"
# What the mocked GetRandomPassword answers (tests assert the program passes exactly this, never a literal of its own).
MOCK_RANDOM_PASSWORD = "mock-random-password-from-secrets-manager"
# What a StackReference to the primary answers unless `evaluate` is given the referenced stack's outputs.
PRIMARY_OUTPUTS = {
    "dbArn": f"arn:aws:rds:us-east-1:{ACCOUNT_ID}:db:exception-collector-us-east-1",
    "kmsKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/peer",
    "dumpBucket": "peer-dumps",
}


@dataclass
class Registered:
    type: str
    name: str
    urn: str = ""
    parent_urn: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()
    provider: str = ""
    custom: bool = True

    def get(self, path: str, default: Any = None) -> Any:
        """Dotted lookup into the inputs, e.g. `r.get("metadata.name")`."""
        node: Any = self.inputs
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return node


@dataclass
class Evaluation:
    settings: Settings
    resources: list[Registered]
    exports: dict[str, Any]

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name_contains: str = "") -> Registered:
        found = [r for r in self.of_type(type_token) if name_contains in r.name]
        if len(found) != 1:
            names = [r.name for r in found]
            raise AssertionError(f"expected one {type_token} named *{name_contains}*, found {names}")
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)


def _mock_outputs(
    args: pulumi.runtime.MockResourceArgs, region: str, references: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Outputs a provider would add: ids, ARNs, endpoints; inputs pass through as AWS echoes them."""
    outputs = dict(args.inputs)
    name = args.name
    if args.typ.startswith("aws:"):
        service = args.typ.split(":")[1].split("/")[0]
        outputs.setdefault("arn", f"arn:aws:{service}:mock-region:{ACCOUNT_ID}:{name}")
    if args.typ == "aws:kms/key:Key":
        # As KMS names it: the key's own region (its `region` input, else the stack's).
        outputs["arn"] = f"arn:aws:kms:{outputs.get('region') or region}:{ACCOUNT_ID}:key/{name}"
    if args.typ == "aws:sns/topic:Topic":
        # As SNS names it: the topic's region and name (a topic without one gets its logical name here).
        outputs["arn"] = f"arn:aws:sns:{outputs.get('region') or region}:{ACCOUNT_ID}:{outputs.get('name') or name}"
    if args.typ == "aws:secretsmanager/secret:Secret":
        outputs["arn"] = f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{outputs.get('name', name)}-AbCdEf"
    if args.typ == "aws:s3/bucket:Bucket":
        outputs.setdefault("bucket", name)
    if args.typ == "aws:rds/instance:Instance":
        ident = outputs.get("identifier", name)
        # As RDS names it, so a replica's source ARN names a real instance of the peer stack.
        outputs["arn"] = f"arn:aws:rds:{outputs.get('region') or region}:{ACCOUNT_ID}:db:{ident}"
        outputs.update(
            address=f"{ident}.mock.rds.amazonaws.com",
            endpoint=f"{ident}.mock.rds.amazonaws.com:5432",
            port=outputs.get("port", 5432),
        )
        if outputs.get("manageMasterUserPassword"):
            outputs["masterUserSecrets"] = [{"secretArn": f"arn:aws:secretsmanager:mock:{ACCOUNT_ID}:secret:{ident}"}]
    if args.typ == "aws:route53/zone:Zone":
        outputs.setdefault("zoneId", "ZMOCK123")
    if args.typ.startswith("kubernetes:"):
        metadata = dict(outputs.get("metadata") or {})
        metadata.setdefault("name", name)
        outputs["metadata"] = metadata
    if args.typ == "pulumi:pulumi:StackReference":
        outputs["outputs"] = dict(references.get(name, PRIMARY_OUTPUTS))
    return outputs


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, references: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.resources: dict[str, Registered] = {}
        self.region = region
        self.references = references or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = _mock_outputs(args, self.region, self.references)
        record = self.resources.setdefault(args.name + "|" + args.typ, Registered(args.typ, args.name))
        record.inputs = dict(args.inputs)
        record.outputs = outputs
        record.custom = bool(args.custom)
        record.provider = args.provider or ""
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root", "userId": "mock"}, []
        if args.token == "aws:route53/getZone:getZone":
            zone = "ZMOCK123"
            return {"id": zone, "zoneId": zone, "name": args.args.get("name"), "privateZone": False}, []
        if args.token == "aws:secretsmanager/getRandomPassword:getRandomPassword":
            # What Secrets Manager would draw; the program hands it over write-only.
            return {"randomPassword": MOCK_RANDOM_PASSWORD, "id": "mock"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": args.args.get("name") or "mock-region", "region": "mock-region"}, []
        return {}, []


def evaluate(
    settings: Settings,
    build: Callable[[Settings], dict[str, Any]] = build_topology,
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """Run `build(settings)` (default: the program's topology) in a mocked stack and record everything;
    `references` maps a StackReference's name to the outputs that stack exports."""
    mocks = RecordingMocks(settings.region, references)
    # A fresh root stack per evaluation (set_mocks makes one when none is set), so this evaluation's stack name is
    # in the URNs and the transformation below sees only this evaluation's resources.
    pulumi.runtime.reset_options(project=PROJECT, stack=settings.stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=settings.stack, preview=False)
    # One entry per registration. Two registrations may share a name and type (the standby's StackReferences to the
    # primary, one per component): the mocks keep one record of their inputs, while URN, parent and options are each
    # registration's own, so the shared record is copied per registration at the end.
    seen: list[tuple[pulumi.Resource, Registered, pulumi.ResourceOptions, dict[str, Any]]] = []
    protected: dict[int, bool] = {}
    exports: dict[str, Any] = {}

    def remember(args: pulumi.ResourceTransformationArgs) -> None:
        opts = args.opts or pulumi.ResourceOptions()
        record = mocks.resources.setdefault(
            f"{args.name}|{args.type_}", Registered(args.type_, args.name, custom=False)
        )
        # As the SDK decides it: an unset `protect` is the parent's.
        parent_protect = protected.get(id(opts.parent), False) if opts.parent is not None else False
        protect = protected[id(args.resource)] = parent_protect if opts.protect is None else bool(opts.protect)
        own = {
            "protect": protect,
            "retain_on_delete": bool(opts.retain_on_delete),
            "ignore_changes": tuple(opts.ignore_changes or ()),
        }
        seen.append((args.resource, record, opts, own))

    def program() -> None:
        pulumi.runtime.register_stack_transformation(remember)
        for key, value in build(settings).items():
            pulumi.export(key, value)
            pulumi.Output.from_input(value).apply(lambda v, k=key: exports.__setitem__(k, v))
        # URNs resolve once the mocked engine has registered each resource; the run waits for these.
        for res, _, opts, own in seen:
            res.urn.apply(lambda urn, o=own: o.__setitem__("urn", urn))
            if opts.parent is not None:
                opts.parent.urn.apply(lambda urn, o=own: o.__setitem__("parent_urn", urn))

    # The SDK's public way to run a function under the mocks and wait for every registration and apply.
    pulumi.runtime.test(program)()
    return Evaluation(settings, [replace(record, **own) for _, record, _, own in seen], exports)
