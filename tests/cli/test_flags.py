"""Flags mean what the person typed, wherever they stand; typos are named, choices enforced.

In-process: the real parser and the real ``settings.load`` (what ``main`` does before it
connects), so every global flag is checked in both positions against its environment variable.
"""

from __future__ import annotations

import pytest

from job import cli, settings
from job.cli import ALLOW_DESTRUCTIVE, COMMON

# A valid value for each flag, and a different valid value for its variable.
VALUES = {
    "--database-url": ("postgresql://flag@flaghost/flagdb", "postgresql://env@envhost/envdb"),
    "--migrations-dir": ("/from/flag", "/from/env"),
    "--secret-source": ("file", "env"),
    "--db-wait": ("7s", "60s"),
    "--lock-wait": ("3m", "10m"),
    "--lock-timeout": ("2s", "5s"),
    "--lock-retries": ("9", "5"),
    "--statement-timeout": ("30s", "0"),
    "--heartbeat": ("2s", "10s"),
    "--tx-mode": ("all", "each"),
    "--backup": ("file:///from/flag", "none"),
    "--on-unknown": ("fail", "warn"),
    "--log-format": ("console", "json"),
    "--log-level": ("debug", "info"),
    "--termination-log": ("/tmp/from-flag", "/tmp/from-env"),
    "--config-dir": ("/cfg/flag", "/cfg/env"),
    "--phase": ("post", "pre"),
    "--environment": ("staging", "production"),
    "--on-schema-drift": ("warn", "fail"),
}
EXPECTED = {
    "database_url": "postgresql://flag@flaghost/flagdb", "migrations_dir": "/from/flag",
    "secret_source": "file", "db_wait": 7.0, "lock_wait": 180.0, "lock_timeout": 2.0,
    "lock_retries": 9, "statement_timeout": 30.0, "heartbeat": 2.0, "tx_mode": "all",
    "backup": "file:///from/flag", "on_unknown": "fail", "log_format": "console",
    "log_level": "debug", "termination_log": "/tmp/from-flag", "config_dir": "/cfg/flag",
    "phase": "post", "environment": "staging", "on_schema_drift": "warn",
}


def _settings(argv: list[str], environ: dict[str, str]) -> settings.Settings:
    _, flags = cli.parse(argv)
    return settings.load(environ, flags)


def test_every_global_flag_is_covered_here():
    assert set(VALUES) == {o.flag for o in COMMON}
    assert set(EXPECTED) == {o.dest for o in COMMON}


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("command", ["run", "status", "plan", "backup"])
@pytest.mark.parametrize("option", COMMON, ids=lambda o: o.flag)
def test_every_global_flag_wins_over_its_variable_before_and_after_the_command(
        option, command, position):
    flag_value, env_value = VALUES[option.flag]
    environ = {option.env: env_value, "MIGRATE_SECRET_FILE": "/run/secret"}
    argv = ([option.flag, flag_value, command] if position == "before"
            else [command, option.flag, flag_value])
    s = _settings(argv, environ)
    assert getattr(s, option.dest) == EXPECTED[option.dest]


@pytest.mark.parametrize("option", COMMON, ids=lambda o: o.flag)
def test_a_flag_given_only_before_the_command_survives_the_command_parser(option):
    """The bug this guards: the command's own copy of each flag (default None) used to
    overwrite what was typed before the command."""
    flag_value, _ = VALUES[option.flag]
    args, flags = cli.parse([option.flag, flag_value, "status"])
    assert flags[option.dest] is not None
    assert args.command == "status"


@pytest.mark.parametrize("position", ["before", "after"])
def test_allow_destructive_works_before_and_after_the_command(position):
    argv = ([ALLOW_DESTRUCTIVE.flag, "plan"] if position == "before"
            else ["plan", ALLOW_DESTRUCTIVE.flag])
    assert _settings(argv, {"MIGRATE_ALLOW_DESTRUCTIVE": "false"}).allow_destructive is True
    assert _settings(["plan"], {"MIGRATE_ALLOW_DESTRUCTIVE": "false"}).allow_destructive is False


def test_the_value_after_the_command_wins_when_a_flag_is_given_twice():
    s = _settings(["--lock-wait", "1m", "run", "--lock-wait", "2m"], {})
    assert s.lock_wait == 120.0


def test_no_flag_means_the_environment_decides():
    s = _settings(["status"], {"MIGRATE_LOCK_WAIT": "42s", "MIGRATE_TX_MODE": "all"})
    assert (s.lock_wait, s.tx_mode) == (42.0, "all")


@pytest.mark.parametrize("option", [o for o in COMMON if o.choices], ids=lambda o: o.flag)
def test_choices_are_enforced_by_the_parser(option, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse(["run", option.flag, "nonsense"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err and option.choices[0] in err


def test_choices_are_case_insensitive_like_the_variables():
    assert _settings(["run", "--tx-mode", "ALL"], {}).tx_mode == "all"


def test_mistyped_command_gets_a_did_you_mean_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse(["stauts"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'stauts': did you mean `status`?" in err
    assert "choose from" not in err  # not a dump of every command


def test_mistyped_flag_gets_a_did_you_mean(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse(["run", "--lock-wiat", "5s"])
    assert exc.value.code == 2
    assert "did you mean --lock-wait?" in capsys.readouterr().err


@pytest.mark.parametrize(("typo", "meant"), [
    ("MIGRATE_LOCKWAIT", "MIGRATE_LOCK_WAIT"),
    ("MIGRATE_ALLOW_DESTRUCTIV", "MIGRATE_ALLOW_DESTRUCTIVE"),
    ("MIGRATE_DATABSE_URL", "MIGRATE_DATABASE_URL"),
    ("MIGRATE_HEARTBEATS", "MIGRATE_HEARTBEAT"),
])
def test_unknown_variable_is_named_with_the_closest_known_one(typo, meant):
    assert settings.unknown_variables({typo: "x", "MIGRATE_LOCK_WAIT": "1m", "PATH": "/bin"}) == [
        (typo, meant)]


def test_known_variables_come_from_the_settings_spec(monkeypatch):
    """A setting added to _spec() by another feature is known without another list to edit."""
    original = settings._spec

    def extended():
        return [*original(), ("MIGRATE_SOMETHING_NEW", "image", None)]

    monkeypatch.setattr(settings, "_spec", extended)
    assert "MIGRATE_SOMETHING_NEW" in settings.known_variables()
    assert settings.unknown_variables({"MIGRATE_SOMETHING_NEW": "1"}) == []
    assert set(settings.ENV_VARS) - {"GITHUB_STEP_SUMMARY"} <= set(settings.known_variables())
    assert "MIGRATE_DATABASE_URL" in settings.known_variables()


def test_termination_log_defaults_to_kubernetes_path_only_inside_kubernetes():
    assert settings.load({}).termination_log is None
    inside = settings.load({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert inside.termination_log == "/dev/termination-log"
    configured = settings.load({"MIGRATE_TERMINATION_LOG": "/tmp/t"})
    assert configured.termination_log == "/tmp/t"
    off = settings.load({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "MIGRATE_TERMINATION_LOG": ""})
    assert off.termination_log is None


def test_heartbeat_is_a_duration_with_a_ten_second_default():
    assert settings.load({}).heartbeat == 10.0
    assert settings.load({"MIGRATE_HEARTBEAT": "500ms"}).heartbeat == 0.5
    with pytest.raises(Exception, match="MIGRATE_HEARTBEAT='often' is not a duration"):
        settings.load({"MIGRATE_HEARTBEAT": "often"})


def test_main_help_lists_each_global_option_once_with_its_variable_and_exit_codes():
    text = cli.build_parser().format_help()
    for o in (*COMMON, ALLOW_DESTRUCTIVE):
        assert text.count(f"  {o.flag} ") + text.count(f"  {o.flag}\n") == 1, o.flag
        assert o.env in text, o.env
    for code in ("2 ", "6 ", "8 ", "10 ", "130 "):
        assert f"\n  {code}" in text
    assert "docs: " in text and "examples:" in text


COMMANDS = ["run", "status", "plan", "lint", "new", "rollback", "mark", "unmark",
            "accept-changes", "backup", "restore", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_teaches_with_examples_exit_codes_and_docs_without_repeating_globals(
        command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  migrate-job " in text
    assert "exit codes:\n  0 " in text
    assert "docs: https://" in text
    assert "before or after the command" in text
    assert "lock_timeout of migration statements" not in text  # globals: main help only
    assert "MIGRATE_LOCK_TIMEOUT" not in text
    # Each of the command's own options has a description.
    own = [a for a in cli.build_parser()._subparsers._group_actions[0].choices[command]._actions
           if a.help != "==SUPPRESS==" and a.option_strings]
    for action in own:
        assert action.help, action.option_strings
