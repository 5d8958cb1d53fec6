"""The job reads migrations without yoyo's reader; what it reads is exactly what yoyo 9 reads:
the same files and ids, the same directives, the same dependency order. Checked against yoyo's
own functions, so a yoyo CLI and the job never disagree about a directory."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from yoyo import read_migrations
from yoyo.migrations import parse_metadata_from_sql_comments
from yoyo.topologicalsort import CycleError, topological_sort

from job import migrations
from job.errors import ConfigError

HEADERS = [
    "CREATE TABLE t (id int);\n",
    "-- depends: 0001_a\nCREATE TABLE t (id int);\n",
    "-- depends: 0001_a 0002_b\n-- depends: 0003_c\n-- transactional: false\n\nSELECT 1;\n",
    "-- a comment first\n\n   --depends:0001_a\n-- transactional:   FALSE  \nSELECT 1;\n",
    "\n\n\n-- depends: 0001_a\n\n-- more comment\nSELECT 1;\n-- depends: 0009_ignored\n",
    "-- Depends: 0001_a\nSELECT 1;\n",  # yoyo's directives are lower case
    "-- only comments\n-- depends: 0001_a\n",
    "",
    "SELECT 1; -- depends: not_a_directive\n",
    "  \t\n-- phase: post\n-- depends: 0001_a\nSELECT 1;\n",
]


@pytest.mark.parametrize("text", HEADERS)
def test_directives_and_body_are_yoyos(text):
    directives, _, body = parse_metadata_from_sql_comments(text)
    assert migrations.parse_directives(text) == (directives, body)


def _tree(root: Path) -> Path:
    d = root / "m"
    d.mkdir()
    files = {
        "0001_a.sql": "CREATE TABLE a (id int);\n",
        "0001_a.rollback.sql": "DROP TABLE a;\n",
        "0002_b.py": "from yoyo import step\n__depends__ = {'0001_a'}\nsteps = [step('SELECT 1')]\n",
        "0003_c.sql": "-- depends: 0002_b\nSELECT 1;\n",
        "0003_c.verify.sql": "SELECT true;\n",
        "post-apply-stats.sql": "ANALYZE;\n",
        ".hidden.sql": "SELECT 2;\n",
        "_tmp_yoyonew_draft.sql": "SELECT 3;\n",
        "README.md": "not a migration\n",
        "0004_d.SQL": "SELECT 4;\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (root / "elsewhere.sql").write_text("SELECT 5;\n")
    (d / "0005_linked.sql").symlink_to(root / "elsewhere.sql")
    return d


def test_the_same_files_ids_order_and_hooks_as_yoyos_reader(tmp_path):
    d = _tree(tmp_path)
    ours = migrations.read(str(d))
    theirs = read_migrations(str(d))
    # yoyo reads a verify script as a migration of its own; the job sets it aside.
    assert [m.id for m in ours.migrations] == [
        m.id for m in theirs if not m.path.endswith(migrations.VERIFY_SUFFIX)]
    assert [m.path for m in ours.migrations] == [
        m.path for m in theirs if not m.path.endswith(migrations.VERIFY_SUFFIX)]
    assert [m.id for m in ours.post_apply] == [m.id for m in theirs.post_apply]
    by_id = {m.id: m for m in theirs}
    for m in ours.migrations:
        y = by_id[m.id]
        y.load()
        assert m.depends == {d.id for d in y.depends}, m.id
        assert m.transactional == y.use_transactions, m.id
    assert ours.by_id()["0002_b"].yoyo is not None  # yoyo's object, made on demand


def _yoyo_order(items, deps):
    graph = {i: [j for j in deps[i] if j in items] for i in items}
    return list(topological_sort(items, graph))


@pytest.mark.parametrize("seed", range(40))
def test_dependency_order_is_yoyos(tmp_path, seed):
    rng = random.Random(seed)
    n = rng.randint(2, 25)
    names = [f"{i:04d}_m" for i in range(n)]
    rng.shuffle(names)  # file order and dependency order disagree
    deps: dict[str, list[str]] = {}
    rank = {name: rng.random() for name in names}
    for name in names:
        earlier = [o for o in names if rank[o] < rank[name]]
        deps[name] = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3)))
    d = tmp_path / "m"
    d.mkdir()
    for name in names:
        header = f"-- depends: {' '.join(deps[name])}\n" if deps[name] else ""
        (d / f"{name}.sql").write_text(header + "SELECT 1;\n")
    found = migrations.read(str(d))
    subset = [m for m in found.migrations if rng.random() < 0.8] or found.migrations
    ours = [m.id for m in found.in_dependency_order(subset)]
    ids = [m.id for m in subset]
    assert ours == _yoyo_order(ids, {i: deps[i] for i in ids})


def test_a_dependency_cycle_names_what_cannot_be_ordered(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_a.sql").write_text("-- depends: 0002_b\nSELECT 1;\n")
    (d / "0002_b.sql").write_text("-- depends: 0001_a\nSELECT 1;\n")
    (d / "0003_c.sql").write_text("-- depends: 0002_b\nSELECT 1;\n")
    (d / "0004_free.sql").write_text("SELECT 1;\n")
    found = migrations.read(str(d))
    with pytest.raises(ConfigError) as err:
        found.in_dependency_order(found.migrations)
    with pytest.raises(CycleError) as theirs:
        _yoyo_order(["0001_a", "0002_b", "0003_c", "0004_free"],
                    {"0001_a": ["0002_b"], "0002_b": ["0001_a"], "0003_c": ["0002_b"],
                     "0004_free": []})
    assert "dependency cycle among migrations: 0001_a" in err.value.message
    named = [p.split(" ")[0] for p in err.value.message.split(": ", 1)[1].split(", ")]
    assert named == theirs.value.args[1]


def test_two_files_with_one_id_are_refused_naming_both(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_a.sql").write_text("SELECT 1;\n")
    (d / "0001_a.py").write_text("steps = []\n")
    (d / "0001_a.rollback.sql").write_text("SELECT 1;\n")  # not a migration of its own
    with pytest.raises(ConfigError) as err:
        migrations.read(str(d))
    assert "duplicate migration id '0001_a'" in err.value.message
    assert str(d / "0001_a.py") in err.value.message and str(d / "0001_a.sql") in err.value.message
