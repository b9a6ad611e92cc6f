"""example_file: writes a file on run, removes it on rollback, reports on sync whether it exists."""

from pathlib import Path

from stepkit import BaseStep, PermanentError, ResourceStatus, StepContext, StepResult


def _path(ctx: StepContext) -> Path:
    if not ctx.parameters.get("path"):
        raise PermanentError("parameter 'path' is required", code="BadParameter")
    return Path(ctx.parameters["path"])


class FileStep(BaseStep):
    def run(self, ctx: StepContext) -> StepResult:
        path = _path(ctx)  # at-least-once: write to a temp file named by the key, then rename
        tmp = path.with_name(f".{path.name}.{ctx.idempotency_key}")
        tmp.write_text(ctx.parameters.get("content", ""))
        tmp.replace(path)
        ctx.log.info("file written", path=str(path))
        resource = ResourceStatus(id=str(path), status="Present")
        return StepResult(attributes={"file": str(path)}, resource=resource)

    def rollback(self, ctx: StepContext) -> None:
        _path(ctx).unlink(missing_ok=True)  # repeated or after a failed run: nothing to undo is fine

    def sync(self, ctx: StepContext) -> StepResult:
        return StepResult(resource=ResourceStatus(status="Present" if _path(ctx).exists() else "Missing"))
