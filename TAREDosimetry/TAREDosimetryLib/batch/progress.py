"""Progress of a batch: cases done, failed and skipped, and the estimated time left."""

import time

__all__ = ["BatchProgress", "duration_text"]


def duration_text(seconds):
    """'42 s', '3 min 05 s', '2 h 04 min'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class BatchProgress:
    """Counts finished cases and writes one line per case to ``log``.

    The estimate of the time left is the cases still to run divided by the rate at which cases
    finished so far in this batch (wall time since the first case started, so parallel workers
    count); skipped (unchanged) cases do not enter the rate.

    Parameters
    ----------
    total : int, cases in the manifest.
    log : callable(str) or None.
    width : int, characters of the bar.
    """

    def __init__(self, total, log=None, width=24):
        self.total, self.log, self.width = int(total), log, int(width)
        self.done = self.failed = self.skipped = 0
        self.start = None

    def started(self):
        self.start = time.perf_counter()

    @property
    def finished(self):
        return self.done + self.failed + self.skipped

    def eta_s(self):
        """Seconds left (None before the first computed case finishes)."""
        computed = self.done + self.failed
        if not computed or self.start is None:
            return None
        rate = computed / max(time.perf_counter() - self.start, 1e-9)
        return (self.total - self.finished) / rate

    def bar(self):
        n = int(round(self.width * self.finished / self.total)) if self.total else self.width
        return "[" + "#" * n + "-" * (self.width - n) + "]"

    def status_text(self):
        eta = self.eta_s()
        left = "done" if self.finished >= self.total else ("estimating the time left" if eta is None else
                                                           f"about {duration_text(eta)} left")
        return (f"{self.bar()} {self.finished}/{self.total}: {self.done} done, {self.failed} failed, "
                f"{self.skipped} skipped; {left}")

    def update(self, entry):
        """Count a finished case and log its line."""
        status = entry["status"]
        if status == "ok":
            self.done += 1
        elif status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
        if self.log:
            what = status + (f" ({entry['overall']})" if entry.get("overall") else "")
            if status == "failed" and entry.get("error"):
                what += ": " + entry["error"].splitlines()[0]
            took = f" in {entry['seconds']:.1f} s" if status != "skipped" and entry.get("seconds") else ""
            self.log(f"{entry['case_id']}: {what}{took}\n  {self.status_text()}")
