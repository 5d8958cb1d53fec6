"""`migrate-job ecs-run`: the migration as a one-off ECS task, exiting with its exit code.

- ``command``: the command's edge (flags, environment, signals, boto3 sessions, output);
- ``request``: building and validating the RunTask request (pure);
- ``wait``: the waiting loop and the CloudWatch Logs tail (clients injected);
- ``outcome``: what a task description means for the exit code (pure, table-tested).

Imported only when ``ecs-run`` runs; boto3 is imported inside ``command.main``.
"""

from job.ecs.command import Interrupts, Runtime, add_arguments, execute, main

__all__ = ["Interrupts", "Runtime", "add_arguments", "execute", "main"]
