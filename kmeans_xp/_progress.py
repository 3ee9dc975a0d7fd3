"""A progress bar for long k-means fits.

`ProgressBar` receives three events from the Lloyd loop: a run starts, an
iteration ends, a run ends. It draws a tqdm bar when tqdm is installed
(``pip install 'kmeans_xp[cli]'``) and otherwise writes plain lines to
stderr, a few per second at most. ``KMeans(progress=True)`` builds one
with the defaults; pass your own ``ProgressBar(...)`` (or any object with
the same three methods) to change where and how it writes.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["ProgressBar"]


def _tqdm_class():
    """tqdm's class, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class ProgressBar:
    """Report the Lloyd iterations of each k-means run.

    Parameters
    ----------
    file : file object, optional
        Where to write; ``sys.stderr`` (read at each write) when None.
    use_tqdm : bool or None, default=None
        True draws a tqdm bar (an ImportError if tqdm is missing), False
        writes plain text lines, None uses tqdm when it is installed.
    desc : str, default="k-means"
        Label at the start of every line.
    min_interval : float, default=0.5
        Plain text only: seconds between two iteration lines (the first
        and last iteration of a run are always written). 0 writes every
        iteration.
    leave : bool, default=True
        tqdm only: keep each run's finished bar on the screen.

    Notes
    -----
    The three methods below are the whole interface the fitting code uses;
    any object that has them can be passed as ``progress=``.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> bar = ProgressBar(file=out, use_tqdm=False, min_interval=0)
    >>> bar.start_run(0, n_init=1, max_iter=2)
    >>> bar.iteration(0, inertia=10.0, center_shift=0.5)
    >>> bar.iteration(1, inertia=8.0, center_shift=0.1)
    >>> bar.end_run(n_iter=2, converged=False)
    >>> print(out.getvalue().strip().splitlines()[-1])
    k-means run 1/1: max_iter=2 reached without convergence (inertia 8, centre shift 0.1)
    """

    def __init__(self, *, file=None, use_tqdm: bool | None = None, desc: str = "k-means",
                 min_interval: float = 0.5, leave: bool = True):
        if use_tqdm not in (None, True, False):
            raise TypeError(f"use_tqdm must be None, True or False, got {use_tqdm!r}.")
        if not isinstance(min_interval, (int, float)) or not min_interval >= 0:
            raise ValueError(f"min_interval must be a number >= 0, got {min_interval!r}.")
        tqdm = _tqdm_class() if use_tqdm in (None, True) else None
        if use_tqdm is True and tqdm is None:
            raise ImportError("ProgressBar(use_tqdm=True) needs tqdm: pip install tqdm")
        self._tqdm = tqdm
        self._file = file
        self.desc = desc
        self.min_interval = float(min_interval)
        self.leave = leave
        self._bar = None
        self._run = 0
        self._n_init = 1
        self._max_iter = 0
        self._last = (math.nan, math.nan)
        self._last_write = -math.inf

    @property
    def file(self):
        return sys.stderr if self._file is None else self._file

    def _label(self) -> str:
        return f"{self.desc} run {self._run + 1}/{self._n_init}"

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def start_run(self, run: int, n_init: int, max_iter: int) -> None:
        """A run starts: ``run`` counts from 0 up to ``n_init - 1``."""
        self.close()
        self._run, self._n_init, self._max_iter = int(run), int(n_init), int(max_iter)
        self._last = (math.nan, math.nan)
        self._last_write = -math.inf
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self._max_iter, desc=self._label(), unit="it",
                                   file=self.file, leave=self.leave, dynamic_ncols=True)
        else:
            self._write(f"{self._label()}: up to {self._max_iter} iterations")

    def iteration(self, i: int, inertia: float, center_shift: float) -> None:
        """Iteration ``i`` (from 0) of the current run has ended."""
        self._last = (float(inertia), float(center_shift))
        if self._bar is not None:
            self._bar.set_postfix(inertia=f"{self._last[0]:.6g}",
                                  shift=f"{self._last[1]:.3g}", refresh=False)
            self._bar.update(int(i) + 1 - self._bar.n)
            return
        now = time.monotonic()
        last_one = int(i) + 1 >= self._max_iter
        if int(i) == 0 or last_one or now - self._last_write >= self.min_interval:
            self._last_write = now
            self._write(f"{self._label()}: iteration {int(i) + 1}/{self._max_iter}, "
                        f"inertia {self._last[0]:.6g}, centre shift {self._last[1]:.3g}")

    def end_run(self, n_iter: int, converged: bool) -> None:
        """The current run stopped after ``n_iter`` iterations."""
        inertia, shift = self._last
        if converged:
            message = f"{self._label()}: converged after {int(n_iter)} iteration"
            message += "" if int(n_iter) == 1 else "s"
        else:
            message = f"{self._label()}: max_iter={self._max_iter} reached without convergence"
        if not math.isnan(inertia):
            message += f" (inertia {inertia:.6g}"
            message += ")" if converged else f", centre shift {shift:.3g})"
        if self._bar is not None:
            self._bar.set_postfix(inertia=f"{inertia:.6g}", refresh=False)
            self._bar.set_description(
                self._label() + (" converged" if converged else " not converged"), refresh=False
            )
        self.close()
        self._write(message)

    def close(self) -> None:
        """Close an open tqdm bar (a run cut short by an error leaves one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
