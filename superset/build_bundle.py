"""Build the Superset import bundle (a ZIP) from the dashboards-as-code YAML in superset/assets.

    python superset/build_bundle.py [--dsn postgresql://...]
        [-o out/superset/logalyzer_dashboards.zip]

The YAML under ``assets/`` is Superset's own import format (metadata.yaml, databases/,
datasets/, charts/, dashboards/), so a bundle exported from Superset can be diffed against it.
This script checks it before zipping, because Superset's importer accepts a broken
reference and then shows an empty or failing chart: every uuid unique, every chart's dataset
and every dataset's database present, every column and saved metric a chart names defined in
its dataset, every chart node of a dashboard carrying both ``uuid`` and ``chartId``, native
filters pointing at real datasets and columns. ``--dsn`` (``bootstrap.sh`` passes
LOGALYZER_DSN) replaces the database's placeholder URI; Superset stores the password
encrypted with its SECRET_KEY. The ZIP holds one top-level folder, as Superset expects.

Needs only PyYAML, so it runs in LOGalyzer's venv and in Superset's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

ASSETS = Path(__file__).resolve().parent / "assets"
ROOT_FOLDER = "logalyzer_dashboards"
KINDS = ("databases", "datasets", "charts", "dashboards")
REQUIRED = {
    "databases": ("database_name", "sqlalchemy_uri", "uuid", "version"),
    "datasets": ("table_name", "sql", "uuid", "database_uuid", "columns", "version"),
    "charts": ("slice_name", "viz_type", "params", "uuid", "dataset_uuid", "version"),
    "dashboards": ("dashboard_title", "uuid", "position", "metadata", "version"),
}
# Chart params that name dataset columns (a list or one name) and saved metrics.
COLUMN_PARAMS = ("x_axis", "groupby", "all_columns", "entity", "series", "columns")
METRIC_PARAMS = (
    "metric",
    "metrics",
    "x",
    "y",
    "size",
    "percent_metrics",
    "timeseries_limit_metric",
)


class BundleError(Exception):
    """The assets are inconsistent; the message lists every problem found."""


def load_assets(root: Path = ASSETS) -> dict[str, dict]:
    """Every YAML file of the bundle by its path relative to ``root`` (``charts/X.yaml``)."""
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise BundleError(f"{rel}: not a YAML mapping")
        found[rel] = data
    return found


def by_kind(assets: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """``{"charts": {uuid: chart, ...}, ...}``."""
    out: dict[str, dict[str, dict]] = {k: {} for k in KINDS}
    for rel, data in assets.items():
        kind = rel.split("/", 1)[0]
        if kind in out:
            out[kind][str(data.get("uuid"))] = data
    return out


def _names(value) -> list[str]:
    """Column or metric names in a chart param: a string, or a list of strings; ad-hoc
    (dict) entries define themselves and are skipped."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def validate(assets: dict[str, dict]) -> list[str]:
    """All problems of the bundle, one line each; empty when it is consistent."""
    problems: list[str] = []
    meta = assets.get("metadata.yaml")
    if not meta or meta.get("version") != "1.0.0":
        problems.append("metadata.yaml: missing or not version 1.0.0")
    seen: dict[str, str] = {}
    for rel, data in assets.items():
        kind = rel.split("/", 1)[0]
        if kind not in REQUIRED:
            continue
        for field in REQUIRED[kind]:
            if data.get(field) in (None, ""):
                problems.append(f"{rel}: no {field}")
        u = str(data.get("uuid"))
        if u in seen:
            problems.append(f"{rel}: uuid {u} also used by {seen[u]}")
        seen[u] = rel
    k = by_kind(assets)
    for ds in k["datasets"].values():
        if str(ds.get("database_uuid")) not in k["databases"]:
            problems.append(
                f"dataset {ds.get('table_name')}: unknown database {ds.get('database_uuid')}"
            )
        cols = {c["column_name"] for c in ds.get("columns", [])}
        if ds.get("main_dttm_col") and ds["main_dttm_col"] not in cols:
            problems.append(
                f"dataset {ds['table_name']}: main_dttm_col {ds['main_dttm_col']} is no column"
            )
    for ch in k["charts"].values():
        name = ch.get("slice_name")
        ds = k["datasets"].get(str(ch.get("dataset_uuid")))
        if ds is None:
            problems.append(f"chart {name!r}: unknown dataset {ch.get('dataset_uuid')}")
            continue
        params = ch.get("params") or {}
        if params.get("viz_type", ch["viz_type"]) != ch["viz_type"]:
            problems.append(f"chart {name!r}: params.viz_type differs from viz_type")
        cols = {c["column_name"] for c in ds.get("columns", [])}
        metrics = {m["metric_name"] for m in ds.get("metrics", [])}
        for p in COLUMN_PARAMS:
            for c in _names(params.get(p)):
                if c not in cols:
                    problems.append(
                        f"chart {name!r}: {p} names {c!r}, not a column of {ds['table_name']}"
                    )
        for p in METRIC_PARAMS:
            for m in _names(params.get(p)):
                if m not in metrics:
                    problems.append(
                        f"chart {name!r}: {p} names {m!r}, not a metric of {ds['table_name']}"
                    )
        for f in params.get("adhoc_filters") or []:
            if f.get("expressionType") == "SIMPLE" and f.get("subject") not in cols:
                problems.append(f"chart {name!r}: filter on {f.get('subject')!r}, not a column")
        for entry in params.get("order_by_cols") or []:
            col = json.loads(entry)[0]
            if col not in cols:
                problems.append(f"chart {name!r}: orders by {col!r}, not a column")
    for db in k["dashboards"].values():
        problems += _check_dashboard(db, k)
    return problems


def _check_dashboard(dash: dict, k: dict) -> list[str]:
    title = dash.get("dashboard_title")
    problems = []
    pos = dash.get("position") or {}
    ids: dict[int, str] = {}
    for node_id, node in pos.items():
        if not isinstance(node, dict):
            continue
        for child in node.get("children", []):
            if child not in pos:
                problems.append(f"dashboard {title!r}: {node_id} has unknown child {child}")
            elif pos[child].get("parents", [])[-1:] != [node_id]:
                problems.append(f"dashboard {title!r}: {child}'s parents do not end with {node_id}")
        if node.get("type") != "CHART":
            continue
        meta = node.get("meta", {})
        if "uuid" not in meta or "chartId" not in meta:
            problems.append(f"dashboard {title!r}: {node_id} needs both uuid and chartId")
            continue
        if meta["uuid"] not in k["charts"]:
            problems.append(f"dashboard {title!r}: {node_id} shows unknown chart {meta['uuid']}")
        if meta["chartId"] in ids:
            problems.append(
                f"dashboard {title!r}: chartId {meta['chartId']} used by"
                f" {ids[meta['chartId']]} and {node_id}"
            )
        ids[meta["chartId"]] = node_id
    if not ids:
        problems.append(f"dashboard {title!r}: shows no chart")
    chart_of = {
        n["meta"]["chartId"]: k["charts"].get(n["meta"]["uuid"])
        for n in pos.values()
        if isinstance(n, dict) and n.get("type") == "CHART" and "chartId" in n.get("meta", {})
    }
    for f in (dash.get("metadata") or {}).get("native_filter_configuration", []):
        name = f.get("name")
        excluded = set(f.get("scope", {}).get("excluded", []))
        if excluded - set(chart_of):
            problems.append(
                f"dashboard {title!r}: filter {name!r} excludes unknown chartIds"
                f" {sorted(excluded - set(chart_of))}"
            )
        for t in f.get("targets", []):
            if not t:
                continue
            ds = k["datasets"].get(str(t.get("datasetUuid")))
            column = t["column"]["name"]
            if ds is None:
                problems.append(f"dashboard {title!r}: filter {name!r} on unknown dataset")
            elif column not in {c["column_name"] for c in ds["columns"]}:
                problems.append(f"dashboard {title!r}: filter {name!r} on unknown column")
            # A filter reaching a chart whose dataset lacks its column makes Superset warn on it.
            for cid, chart in chart_of.items():
                ds_in = chart and k["datasets"].get(str(chart["dataset_uuid"]))
                if (
                    cid not in excluded
                    and ds_in
                    and column not in {c["column_name"] for c in ds_in["columns"]}
                ):
                    problems.append(
                        f"dashboard {title!r}: filter {name!r} reaches chart "
                        f"{chart['slice_name']!r} whose dataset has no {column!r}"
                    )
    return problems


def sqlalchemy_uri(dsn: str) -> str:
    """A libpq URL as SQLAlchemy wants it for Superset: ``postgresql+psycopg2://...``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise BundleError(f"not a PostgreSQL URL: scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2"))


def build(out: Path, dsn: str | None = None, root: Path = ASSETS) -> Path:
    """Check the assets and write the ZIP; returns its path. Raises :class:`BundleError`."""
    assets = load_assets(root)
    problems = validate(assets)
    if problems:
        raise BundleError("\n".join(problems))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in assets.items():
            if rel.startswith("databases/") and dsn:
                data = {**data, "sqlalchemy_uri": sqlalchemy_uri(dsn)}
            zf.writestr(
                f"{ROOT_FOLDER}/{rel}", yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    out.chmod(0o600)  # it may hold the database password
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--dsn", help="PostgreSQL URL of the LOGalyzer database (default: keep the placeholder)"
    )
    ap.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("out/superset/logalyzer_dashboards.zip"),
        help="the ZIP to write (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    try:
        path = build(args.out, args.dsn)
    except BundleError as exc:
        print(f"Error: the bundle is inconsistent:\n{exc}", file=sys.stderr)
        return 1
    counts = {k: len(v) for k, v in by_kind(load_assets()).items()}
    print(f"wrote {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
