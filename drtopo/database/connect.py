"""Connections to a stack's PostgreSQL, with the password from the environment or the RDS-managed secret.

Passwords never come from config or outputs files: `PGPASSWORD` (the lab's `.lab/env` sets it), else the
Secrets Manager secret that RDS manages (`dbPasswordSecretArn`).
"""

from __future__ import annotations

import json
import logging
import os

import psycopg

from drtopo.aws import stack_client
from drtopo.outputs import StackOutputs

log = logging.getLogger(__name__)


def password(outputs: StackOutputs) -> str | None:
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    if outputs.db_password_secret_arn:
        client = stack_client("secretsmanager", outputs)
        secret = client.get_secret_value(SecretId=outputs.db_password_secret_arn)["SecretString"]
        return json.loads(secret)["password"]
    return None


def conninfo(outputs: StackOutputs, dbname: str | None = None) -> str:
    """A libpq connection string for the stack's database (no password in it; see `connect`)."""
    return psycopg.conninfo.make_conninfo(
        host=outputs.db_address,
        port=str(outputs.db_port),
        user=outputs.db_user,
        dbname=dbname or outputs.db_name,
        connect_timeout="3",
        application_name="drtopo",
    )


def connect(outputs: StackOutputs, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
    kwargs = {}
    secret = password(outputs)
    if secret is not None:
        kwargs["password"] = secret
    log.debug(
        "postgres connect %s:%s/%s as %s (%s)",
        outputs.db_address,
        outputs.db_port,
        dbname or outputs.db_name,
        outputs.db_user,
        outputs.stack,
    )
    return psycopg.connect(conninfo(outputs, dbname), autocommit=autocommit, **kwargs)
