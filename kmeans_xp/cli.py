"""The ``kmeans-xp`` command line (also ``python -m kmeans_xp``).

Commands: ``demo``, ``fit``, ``select-k`` and ``quantize``; ``--help`` on
each. Errors a user can cause (missing file, bad CSV cell, k too large,
unknown backend, no GPU) end with one line on stderr and exit status 1 (2
for a malformed command line, from argparse), never a traceback; set
``KMEANS_XP_DEBUG=1`` to see one anyway. Output files are written to a
temporary name in the target directory and renamed when complete.

Only numpy and array-api-compat are needed; torch, cupy, matplotlib
(plots), Pillow (quantize) and tqdm (progress bars) are used when present.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import __version__
from ._array_api import to_host

__all__ = ["main"]

PROG = "kmeans-xp"
_PLOT_HINT = "pip install 'kmeans_xp[plot]'"


class CLIError(Exception):
    """A problem with the user's input, reported as one line."""


# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    device: object
    dtype_name: str | None  # None: the data's own (float32 or float64)

    def for_data(self, data: np.ndarray) -> Backend:
        """This backend with its dtype settled by ``data`` if --dtype was not given."""
        if self.dtype_name is not None:
            return self
        return Backend(self.name, self.device, "float32" if data.dtype == np.float32 else "float64")

    def to_array(self, a: np.ndarray, dtype_name: str | None = None):
        """A host array on this backend's device (the one deliberate copy)."""
        dtype_name = dtype_name or self.dtype_name or a.dtype.name
        if self.name == "numpy":
            return np.asarray(a, dtype=dtype_name)
        if self.name == "torch":
            import torch

            return torch.asarray(a, dtype=getattr(torch, dtype_name), device=self.device)
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.asarray(a, dtype=dtype_name)

    def describe(self) -> str:
        if self.name == "numpy":
            return f"numpy {np.__version__} on cpu ({self.dtype_name})"
        module = __import__(self.name)
        return f"{self.name} {module.__version__} on {self.device} ({self.dtype_name})"


def _backend(name: str, device: str | None, dtype: str | None) -> Backend:
    """Import and check the backend the user asked for; raise CLIError with
    the reason when it cannot run here."""
    if name == "numpy":
        if device not in (None, "cpu"):
            raise CLIError(
                f"--device {device}: the numpy backend runs on the CPU; "
                "use --backend torch or --backend cupy for a GPU."
            )
        return Backend("numpy", "cpu", dtype)
    if name == "torch":
        try:
            import torch
        except ImportError:
            raise CLIError("--backend torch: torch is not installed (pip install torch).") from None
        device = device or "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA GPU is available to torch on this machine.")
        default = "float32" if device == "cuda" else None
        return Backend("torch", torch.device(device), dtype or default)
    if name == "cupy":
        if device == "cpu":
            raise CLIError("--device cpu: the cupy backend runs on CUDA GPUs only.")
        try:
            import cupy
        except ImportError:
            raise CLIError("--backend cupy: cupy is not installed (pip install cupy).") from None
        try:
            n_devices = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 (a missing or broken driver raises anything)
            raise CLIError(f"--backend cupy: CUDA is not usable ({exc}).") from None
        if n_devices == 0:
            raise CLIError("--backend cupy: no CUDA GPU is available on this machine.")
        return Backend("cupy", 0, dtype or "float32")
    raise CLIError(f"unknown backend {name!r}; choose numpy, torch or cupy.")


# --------------------------------------------------------------------------
# Input and output
# --------------------------------------------------------------------------


def _check_input(path: str) -> None:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a data file.")


def _load_data(path: str, delimiter: str | None = None) -> np.ndarray:
    """A 2-D host array from a .npy file (float32 stays float32, other
    numbers become float64) or a delimited text file (header optional,
    delimiter detected unless given), checked to hold finite numbers."""
    _check_input(path)
    if path.lower().endswith(".npy"):
        try:
            data = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise CLIError(f"{path}: not a readable .npy file ({exc}).") from None
        if data.dtype.kind not in "biuf":
            raise CLIError(f"{path}: holds {data.dtype} values; numbers are needed.")
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise CLIError(
                f"{path}: expected a 2-D array (rows x features), got shape {data.shape}."
            )
        # float32 is kept: a float64 copy would double the memory.
        data = np.array(data, dtype=np.float32 if data.dtype == np.float32 else np.float64)
        if data.shape[0] == 0 or data.shape[1] == 0:
            raise CLIError(f"{path}: no data rows.")
        _check_finite_npy(path, data)
    else:
        data = _read_csv(path, delimiter)
    return data


def _check_finite_npy(path: str, data: np.ndarray) -> None:
    finite = np.isfinite(data)
    if not finite.all():
        row, column = (int(i) + 1 for i in np.argwhere(~finite)[0])
        raise CLIError(
            f"{path}, row {row}, column {column}: {data[row - 1, column - 1]} is not a "
            "finite number; k-means needs finite values."
        )


#: Delimiters tried, in order, when --delimiter is not given (None: spaces).
_DELIMITERS = (",", ";", "\t", None)
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", None: "whitespace"}


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter), [])


def _data_lines(path: str):
    """(line number, text) of the non-blank lines of a text file."""
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    yield line_no, line.rstrip("\r\n")
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a text CSV file (use .npy for binary data).") from None


def _sniff_delimiter(lines: list[str]) -> str | None:
    """The first candidate that splits the last sampled line into several
    numbers, with the same count on every sampled line; ',' when none does
    (the error that follows then hints at the delimiter)."""
    for delimiter in _DELIMITERS:
        counts = {len(_split(line, delimiter)) for line in lines}
        cells = _split(lines[-1], delimiter)
        if len(counts) == 1 and len(cells) > 1 and all(_is_number(c) for c in cells):
            return delimiter
    return ","


def _read_csv(path: str, delimiter: str | None) -> np.ndarray:
    sample = []
    for _, line in _data_lines(path):
        sample.append(line)
        if len(sample) == 3:
            break
    if not sample:
        raise CLIError(f"{path}: the file is empty.")
    if delimiter is None:
        delimiter = _sniff_delimiter(sample)
    elif delimiter == "whitespace":
        delimiter = None
    first = _split(sample[0], delimiter)
    has_header = not all(_is_number(cell) for cell in first)
    if has_header and len(sample) == 1:
        raise CLIError(f"{path}: a header row and no data rows.")
    try:
        # The fast path; on any failure the slow scan below says where.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.loadtxt(path, delimiter=delimiter, skiprows=int(has_header), ndmin=2,
                              dtype=np.float64, encoding="utf-8")
    except ValueError:
        _report_bad_cell(path, delimiter, has_header, len(first))
        raise CLIError(f"{path}: could not be read as numeric CSV.") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise CLIError(f"{path}: no data rows.")
    if not np.isfinite(data).all():
        _report_non_finite(path, delimiter, has_header)
    return data


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _delimiter_hint(cell: str, delimiter: str | None) -> str:
    for other in (";", "\t", ","):
        if other != delimiter and other in cell:
            flag = "\\t" if other == "\t" else other
            return (f" (read with delimiter {_DELIMITER_NAMES[delimiter]}; the file looks "
                    f"{_DELIMITER_NAMES[other]}-separated: try --delimiter '{flag}')")
    return ""


def _report_bad_cell(path: str, delimiter: str | None, has_header: bool,
                     n_columns: int) -> None:
    """Raise a CLIError naming the first line that is not numeric CSV."""
    for index, (line_no, line) in enumerate(_data_lines(path)):
        if has_header and index == 0:
            continue
        row = _split(line, delimiter)
        for column, cell in enumerate(row, start=1):
            if not _is_number(cell):
                raise CLIError(
                    f"{path}, line {line_no}, column {column}: {cell!r} is not a number"
                    f"{_delimiter_hint(cell, delimiter)}."
                )
        if len(row) != n_columns:
            raise CLIError(
                f"{path}, line {line_no}: {len(row)} columns, expected {n_columns}."
            )


def _report_non_finite(path: str, delimiter: str | None, has_header: bool) -> None:
    """Raise a CLIError naming the first NaN or infinite cell."""
    for index, (line_no, line) in enumerate(_data_lines(path)):
        if has_header and index == 0:
            continue
        for column, cell in enumerate(_split(line, delimiter), start=1):
            if not np.isfinite(float(cell)):
                raise CLIError(
                    f"{path}, line {line_no}, column {column}: {cell.strip()!r} is not a "
                    "finite number; k-means needs finite values."
                )


def _check_output(path: str | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be written."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CLIError(f"{option} {path}: directory {directory} does not exist.")
    if not os.access(directory, os.W_OK):
        raise CLIError(f"{option} {path}: directory {directory} is not writable.")
    if os.path.isdir(path):
        raise CLIError(f"{option} {path}: is a directory.")


@contextlib.contextmanager
def _atomic_output(path: str):
    """A binary file object whose content appears at ``path`` only when the
    block completes; on error the temporary file is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        # mkstemp makes the file private; give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: Formats of --labels and --centers, by file extension.
_TABLE_FORMATS = (".csv", ".txt", ".npy")


def _check_table_output(path: str | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be written or its extension
    names no format we write."""
    _check_output(path, option)
    if path is not None and os.path.splitext(path)[1].lower() not in _TABLE_FORMATS:
        raise CLIError(
            f"{option} {path}: unknown file type; use .csv (comma-separated, one header "
            "row), .txt (space-separated) or .npy (numpy binary)."
        )


def _write_table(path: str, values: np.ndarray, header: list[str]) -> None:
    """Write a 1-D or 2-D array in the format its extension names; floats
    keep every digit of their dtype."""
    suffix = os.path.splitext(path)[1].lower()
    with _atomic_output(path) as f:
        if suffix == ".npy":
            np.save(f, values)
            return
        rows = values.reshape(values.shape[0], -1)
        if values.dtype.kind == "f":
            digits = 9 if values.dtype == np.float32 else 17
            cells = [[f"{v:.{digits}g}" for v in row] for row in rows.tolist()]
        else:
            cells = [[str(int(v)) for v in row] for row in rows.tolist()]
        separator = "," if suffix == ".csv" else " "
        lines = [separator.join(row) for row in cells]
        if suffix == ".csv":
            lines.insert(0, separator.join(header))
        f.write(("\n".join(lines) + "\n").encode())


def _plot_format(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    return suffix or "png"


def _require_matplotlib(option: str, path: str):
    """The matplotlib Figure class, after checking ``path``'s format is one
    matplotlib can write (before any work is done)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError(f"{option} needs matplotlib, which is not installed: {_PLOT_HINT}") from None
    supported = Figure().canvas.get_supported_filetypes()
    if _plot_format(path) not in supported:
        raise CLIError(
            f"{option} {path}: matplotlib cannot write .{_plot_format(path)} files; "
            f"use one of {', '.join('.' + ext for ext in sorted(supported))}."
        )
    return Figure


def _save_figure(fig, path: str) -> None:
    with _atomic_output(path) as f:
        fig.savefig(f, format=_plot_format(path), dpi=110, bbox_inches="tight")


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------


class _Progress:
    """A tqdm bar that appears only after about a second, refreshed from a
    background thread so a single long fit still shows its elapsed time.
    Silent without tqdm, with --quiet/--json, or when stderr is not a
    terminal."""

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "fit"):
        self.bar = None
        self._stop = threading.Event()
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit=unit, delay=1.0, leave=False,
                        file=sys.stderr, dynamic_ncols=True)
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            self.bar.update(0)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self._stop.set()
            self._thread.join()
            self.bar.close()


def _progress_enabled(args) -> bool:
    if args.quiet or getattr(args, "json", False):
        return False
    return getattr(args, "progress", False) or sys.stderr.isatty()


def _kmeans_takes_progress() -> bool:
    """Whether KMeans has the ``progress=`` hook (per-iteration events)."""
    import inspect

    from ._kmeans import KMeans

    return "progress" in inspect.signature(KMeans).parameters


class _RunsOf:
    """Passes one KMeans(n_init=1) fit's events to a ProgressBar as run
    ``run`` of ``n_init``, so the bar numbers the CLI's runs."""

    def __init__(self, bar, run: int, n_init: int):
        self.bar, self.run, self.n_init = bar, run, n_init

    def start_run(self, run: int, n_init: int, max_iter: int) -> None:
        self.bar.start_run(self.run, self.n_init, max_iter)

    def iteration(self, i: int, inertia: float, center_shift: float) -> None:
        self.bar.iteration(i, inertia, center_shift)

    def end_run(self, n_iter: int, converged: bool) -> None:
        self.bar.end_run(n_iter, converged)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _json_safe(value):
    """NaN and infinity become null: strict JSON has no such numbers."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _emit(args, text_lines: list[str], payload: dict) -> None:
    if getattr(args, "json", False):
        print(json.dumps(_json_safe(payload), indent=2, allow_nan=False))
    else:
        for line in text_lines:
            print(line)


def _fit_best_of(X, args, progress):
    """``--n-init`` k-means runs, one KMeans(n_init=1) fit each, the lowest
    inertia wins (what KMeans(n_init=...) does). ``progress`` is a
    ProgressBar given every run's iterations, or a _Progress counting runs
    where KMeans has no ``progress=`` hook."""
    from ._kmeans import KMeans
    from ._progress import ProgressBar

    seeds = np.random.default_rng(args.seed).integers(2**32, size=args.n_init)
    best = None
    for run, run_seed in enumerate(seeds):
        extra = {}
        if isinstance(progress, ProgressBar):
            extra["progress"] = _RunsOf(progress, run, args.n_init)
        model = KMeans(n_clusters=args.k, n_init=1, max_iter=args.max_iter, tol=args.tol,
                       random_state=int(run_seed), metric=args.metric, **extra)
        try:
            model.fit(X)
        except ValueError as exc:
            raise CLIError(f"{args.data}: {exc}") from None
        if best is None or model.inertia_ < best.inertia_:
            best = model
        if not isinstance(progress, ProgressBar):
            progress.update()
    return best


def _cmd_fit(args) -> int:
    from ._progress import ProgressBar
    from .plot import plot_clusters

    _check_table_output(args.labels, "--labels")
    _check_table_output(args.centers, "--centers")
    _check_output(args.plot, "--plot")
    Figure = _require_matplotlib("--plot", args.plot) if args.plot else None
    backend = _backend(args.backend, args.device, args.dtype)
    data = _load_data(args.data, args.delimiter)
    backend = backend.for_data(data)
    n_samples, n_features = data.shape
    if args.k > n_samples:
        raise CLIError(
            f"-k {args.k} is larger than the number of rows ({n_samples}) in {args.data}."
        )
    X = backend.to_array(data)
    del data
    start = time.perf_counter()
    enabled = _progress_enabled(args)
    if enabled and _kmeans_takes_progress():
        with ProgressBar(desc=f"k-means k={args.k}", leave=False) as bar:
            model = _fit_best_of(X, args, bar)
    else:
        with _Progress(args.n_init, f"k-means k={args.k}", enabled, unit="run") as bar:
            model = _fit_best_of(X, args, bar)
    fit_time = time.perf_counter() - start
    labels = to_host(model.labels_)
    centers = to_host(model.cluster_centers_)
    sizes = np.bincount(labels, minlength=args.k).tolist()
    outputs = {}
    if args.labels:
        _write_table(args.labels, labels, ["label"])
        outputs["labels"] = args.labels
    if args.centers:
        _write_table(args.centers, centers, [f"x{j}" for j in range(n_features)])
        outputs["centers"] = args.centers
    if args.plot:
        fig = Figure(figsize=(6.4, 4.8))
        plot_clusters(X, model.labels_, model.cluster_centers_, ax=fig.subplots(),
                      title=f"{os.path.basename(args.data)}: k-means, k={args.k}")
        _save_figure(fig, args.plot)
        outputs["plot"] = args.plot
    lines = [
        (f"{args.data}: {n_samples} samples x {n_features} features, k={args.k}, "
         f"{args.metric} k-means"),
        f"backend: {backend.describe()}",
        (f"fit: {fit_time:.3f} s, best of {args.n_init} run(s), {model.n_iter_} iterations, "
         f"inertia {model.inertia_:.6g}"),
        "cluster sizes: " + " ".join(str(s) for s in sizes),
    ] + [f"wrote {name}: {path}" for name, path in outputs.items()]
    payload = {
        "command": "fit", "data": args.data, "n_samples": n_samples,
        "n_features": n_features, "k": args.k, "backend": args.backend,
        "device": str(backend.device), "dtype": backend.dtype_name,
        "inertia": float(model.inertia_), "n_iter": int(model.n_iter_),
        "metric": args.metric, "fit_time_s": fit_time, "cluster_sizes": sizes,
        "centers": centers.tolist(),
        "outputs": outputs,
    }
    _emit(args, lines, payload)
    return 0


def _parse_k_range(text: str) -> list[int]:
    try:
        if ":" in text:
            low, high = (int(part) for part in text.split(":"))
            values = list(range(low, high + 1))
        else:
            values = [int(part) for part in text.split(",")]
    except ValueError:
        raise CLIError(
            f"--k-range {text!r}: expected LOW:HIGH (inclusive, e.g. 2:12) or a list like 2,4,8."
        ) from None
    if not values:
        raise CLIError(f"--k-range {text!r} holds no k.")
    return values


def _cmd_select_k(args) -> int:
    from ._select_k import select_k
    from .plot import plot_elbow

    _check_output(args.plot, "--plot")
    Figure = _require_matplotlib("--plot", args.plot) if args.plot else None
    k_values = _parse_k_range(args.k_range)
    backend = _backend(args.backend, args.device, args.dtype)
    data = _load_data(args.data, args.delimiter)
    backend = backend.for_data(data)
    if max(k_values) > data.shape[0] - 1:
        raise CLIError(
            f"--k-range {args.k_range}: k={max(k_values)} needs more than "
            f"{data.shape[0]} rows in {args.data} (at most k = rows - 1)."
        )
    X = backend.to_array(data)
    start = time.perf_counter()
    with _Progress(len(k_values), "select-k", _progress_enabled(args), unit="k") as bar:
        result = select_k(
            X, k_values, criterion=args.criterion, n_init=args.n_init,
            max_iter=args.max_iter, tol=args.tol, random_state=args.seed, sample_size=args.sample_size, metric=args.metric,
            callback=lambda k, record: bar.update(),
        )
    total = time.perf_counter() - start
    outputs = {}
    if args.plot:
        fig = Figure(figsize=(6.4, 4.8))
        plot_elbow(result, ax=fig.subplots())
        _save_figure(fig, args.plot)
        outputs["plot"] = args.plot
    lines = [
        f"{args.data}: {data.shape[0]} samples x {data.shape[1]} features",
        f"backend: {backend.describe()}",
        result.to_table(),
        f"best k: {result.best_k} (criterion: {args.criterion}; {total:.2f} s in all)",
    ] + [f"wrote {name}: {path}" for name, path in outputs.items()]
    payload = {
        "command": "select-k", "data": args.data, "backend": args.backend,
        "device": str(backend.device), "criterion": args.criterion,
        "best_k": result.best_k, "results": result.rows(), "total_time_s": total,
        "silhouette_sample_size": result.silhouette_sample_size, "outputs": outputs,
    }
    _emit(args, lines, payload)
    return 0


def _cmd_quantize(args) -> int:
    from .image import quantize_image

    try:
        from PIL import Image
    except ImportError:
        raise CLIError(
            "quantize needs Pillow, which is not installed: pip install 'kmeans_xp[image]'"
        ) from None
    _check_input(args.image)
    _check_output(args.output, "-o")
    out_format = Image.registered_extensions().get(os.path.splitext(args.output)[1].lower())
    if out_format is None:
        raise CLIError(f"-o {args.output}: unknown image format; use .png, .jpg, .bmp, ...")
    if args.k < 1:
        raise CLIError(f"-k {args.k}: need at least 1 colour.")
    backend = _backend(args.backend, args.device, "uint8")
    try:
        with Image.open(args.image) as opened:
            picture = opened.convert("RGBA" if "A" in opened.getbands() else "RGB")
    except OSError as exc:
        raise CLIError(f"{args.image}: not a readable image ({exc}).") from None
    pixels = np.array(picture)  # writable: torch refuses read-only buffers
    alpha = pixels[..., 3] if pixels.shape[-1] == 4 else None
    rgb = np.ascontiguousarray(pixels[..., :3])
    n_pixels = rgb.shape[0] * rgb.shape[1]
    if args.k > n_pixels:
        raise CLIError(
            f"-k {args.k} is larger than the number of pixels ({n_pixels}) in {args.image}."
        )
    if args.k > args.sample_size and n_pixels > args.sample_size:
        raise CLIError(
            f"-k {args.k} is larger than --sample-size {args.sample_size}, the number of "
            f"pixels the palette is fitted on; give --sample-size {args.k} or more."
        )
    start = time.perf_counter()
    with _Progress(1, "quantize", _progress_enabled(args), unit="image") as bar:
        quantized, palette = quantize_image(
            backend.to_array(rgb, "uint8"), args.k, channel_axis=-1,
            random_state=args.seed, sample_size=args.sample_size, max_iter=args.max_iter,
        )
        bar.update()
    elapsed = time.perf_counter() - start
    result = to_host(quantized)
    if alpha is not None and out_format != "JPEG":
        result = np.concatenate([result, alpha[..., None]], axis=-1)
    with _atomic_output(args.output) as f:
        Image.fromarray(result).save(f, format=out_format)
    palette_list = to_host(palette).tolist()
    lines = [
        (f"{args.image}: {rgb.shape[1]} x {rgb.shape[0]} pixels -> {args.k} colours "
         f"in {elapsed:.2f} s ({backend.describe()})"),
        "palette: " + " ".join("#{:02x}{:02x}{:02x}".format(*c) for c in palette_list),
        f"wrote {args.output}",
    ]
    payload = {
        "command": "quantize", "image": args.image, "output": args.output,
        "width": rgb.shape[1], "height": rgb.shape[0], "n_colors": args.k,
        "palette": palette_list, "time_s": elapsed, "backend": args.backend,
        "device": str(backend.device),
    }
    _emit(args, lines, payload)
    return 0


def _agreement(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of points whose cluster's majority true label is their own."""
    table = np.zeros((labels.max() + 1, truth.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, truth), 1)
    return float(table.max(axis=1).sum() / labels.shape[0])


def _cmd_demo(args) -> int:
    import kmeans_xp

    from ._kmeans import KMeans
    from ._select_k import select_k
    from .datasets import demo_blobs

    plot_path = None if args.no_plot else args.plot
    _check_output(plot_path, "--plot")
    # The demo must run with the runtime dependencies alone: no matplotlib
    # means no plot, not an error.
    Figure, plot_status = None, "skipped (--no-plot)"
    if plot_path is not None:
        try:
            Figure = _require_matplotlib("--plot", plot_path)
        except CLIError as exc:
            if "not installed" not in str(exc):
                raise
            plot_status = f"skipped: matplotlib is not installed ({_PLOT_HINT})"
    # The demo's blobs are float64; --dtype or a GPU may ask for float32.
    backend = _backend(args.backend, args.device, args.dtype).for_data(np.empty(0))
    lines = [f"kmeans_xp {kmeans_xp.__version__} demo", f"backend: {backend.describe()}"]

    start = time.perf_counter()
    X_host, truth = demo_blobs(n_samples=args.n_samples)
    X = backend.to_array(X_host)
    t_data = time.perf_counter() - start
    lines.append(
        f"data: {X_host.shape[0]} points in 2-D from 6 Gaussian blobs "
        f"(kmeans_xp.datasets.demo_blobs), {t_data:.3f} s to make and move"
    )

    k_values = list(range(2, 11))
    start = time.perf_counter()
    with _Progress(len(k_values), "select-k", _progress_enabled(args), unit="k") as bar:
        result = select_k(X, k_values, random_state=0, sample_size=2000,
                          callback=lambda k, record: bar.update())
    t_select = time.perf_counter() - start
    lines.append(
        f"select_k: k = 2..10 by silhouette (on 2000 sampled points) -> best k = "
        f"{result.best_k}, {t_select:.2f} s"
    )

    start = time.perf_counter()
    model = KMeans(n_clusters=result.best_k, n_init=3, random_state=0).fit(X)
    labels = to_host(model.labels_)  # also waits for a GPU to finish
    t_fit = time.perf_counter() - start
    agreement = _agreement(labels, truth)
    sizes = np.bincount(labels, minlength=result.best_k).tolist()
    lines += [
        (f"fit: KMeans(n_clusters={result.best_k}, n_init=3): {t_fit:.3f} s, "
         f"{model.n_iter_} iterations, inertia {model.inertia_:.6g}"),
        f"cluster sizes: {' '.join(str(s) for s in sizes)}",
        f"agreement with the true blobs: {agreement:.2%} of points",
    ]

    if Figure is not None:
        from .plot import plot_clusters, plot_elbow

        fig = Figure(figsize=(12, 4.8))
        left, right = fig.subplots(1, 2)
        plot_clusters(X, model.labels_, model.cluster_centers_, ax=left,
                      title=f"demo: k-means with k={result.best_k} on {backend.name}")
        plot_elbow(result, ax=right)
        _save_figure(fig, plot_path)
        plot_status = f"wrote {plot_path}"
    lines.append(f"plot: {plot_status}")
    payload = {
        "command": "demo", "backend": args.backend, "device": str(backend.device),
        "dtype": backend.dtype_name, "n_samples": int(X_host.shape[0]),
        "best_k": result.best_k, "inertia": float(model.inertia_),
        "n_iter": int(model.n_iter_), "cluster_sizes": sizes, "agreement": agreement,
        "times_s": {"data": t_data, "select_k": t_select, "fit": t_fit},
        "plot": plot_status,
    }
    _emit(args, lines, payload)
    return 0


# --------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def _delimiter(text: str):
    names = {"tab": "\t", "\\t": "\t", "whitespace": "whitespace", "space": "whitespace"}
    if text in names:
        return names[text]
    if len(text) != 1 or text in "\"0123456789.+-eE":
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one character such as ',' or ';', or 'tab' or 'whitespace'"
        )
    return text


def _sample_size(text: str):
    return "auto" if text == "auto" else _positive_int(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=("numpy", "torch", "cupy"), default="numpy",
                        help="array library to compute with (default: numpy)")
    common.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device (default: cpu for numpy/torch, cuda for cupy)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    common.add_argument("--progress", action="store_true",
                        help="show the progress bar even when stderr is not a terminal "
                        "(e.g. in a log file)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    metric = argparse.ArgumentParser(add_help=False)
    metric.add_argument("--metric", choices=("euclidean", "cosine"), default="euclidean",
                        help="euclidean k-means, or cosine (spherical) k-means for "
                        "embeddings (default: euclidean)")
    dtype = argparse.ArgumentParser(add_help=False)
    dtype.add_argument("--dtype", choices=("float32", "float64"), default=None,
                       help="floating dtype (default on CPU: float32 for float32 .npy "
                       "data, else float64; on GPU: float32)")
    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument("--delimiter", type=_delimiter, default=None,
                         help="column separator of a text DATA file: one character, "
                         "'tab' or 'whitespace' (default: detected among ',', ';', "
                         "tab and spaces)")
    lloyd = argparse.ArgumentParser(add_help=False)
    lloyd.add_argument("--max-iter", type=_positive_int, default=300,
                       help="most Lloyd iterations per run (default: 300)")
    lloyd.add_argument("--tol", type=_non_negative_float, default=1e-4,
                       help="stop a run when the centres move less than this, relative "
                       "to the data's mean variance (default: 1e-4)")

    parser = _Parser(
        prog=PROG,
        description="k-means on numpy, PyTorch or CuPy: fit, choose k, quantise images.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser("demo", parents=[common, output, dtype],
                               help="cluster a built-in data set and plot it",
                               description="Cluster built-in blobs: choose k, fit, "
                               "print timings, write a plot (needs matplotlib).")
    demo.add_argument("--plot", default="kmeans_xp_demo.png", metavar="PNG",
                      help="where to write the plot (default: kmeans_xp_demo.png)")
    demo.add_argument("--no-plot", action="store_true", help="do not write a plot")
    demo.add_argument("--n-samples", type=_positive_int, default=20_000,
                      help="points in the built-in data set (default: 20000)")
    demo.set_defaults(handler=_cmd_demo)

    fit = commands.add_parser("fit", parents=[common, output, dtype, metric, reading, lloyd],
                              help="cluster a CSV or .npy file",
                              description="Fit k-means to DATA (CSV with or without "
                              "a header row, or .npy), one sample per row.")
    fit.add_argument("data", metavar="DATA",
                     help="CSV (or ';', tab or space separated) or .npy file")
    fit.add_argument("-k", type=_positive_int, required=True, help="number of clusters")
    fit.add_argument("--n-init", type=_positive_int, default=1,
                     help="k-means++ runs; the best is kept (default: 1)")
    fit.add_argument("--labels", metavar="FILE",
                     help="write the label of each row (.csv with a header, .txt or .npy)")
    fit.add_argument("--centers", metavar="FILE",
                     help="write the centres, one per row (.csv with a header, .txt or .npy)")
    fit.add_argument("--plot", metavar="PNG", help="write a cluster plot (needs matplotlib)")
    fit.set_defaults(handler=_cmd_fit)

    sel = commands.add_parser("select-k",
                              parents=[common, output, dtype, metric, reading, lloyd],
                              help="choose the number of clusters",
                              description="Fit every k of a range and choose one.")
    sel.add_argument("data", metavar="DATA",
                     help="CSV (or ';', tab or space separated) or .npy file")
    sel.add_argument("--k-range", default="2:10",
                     help="LOW:HIGH, both included (default 2:10), or a list like 2,4,8")
    sel.add_argument("--criterion", default="silhouette",
                     choices=("silhouette", "calinski_harabasz", "davies_bouldin", "elbow"),
                     help="how the best k is chosen: highest silhouette or "
                     "Calinski-Harabasz score, lowest Davies-Bouldin score, or the knee "
                     "of the inertia curve (default: silhouette)")
    sel.add_argument("--n-init", type=_positive_int, default=1,
                     help="k-means++ runs per k; the best is kept (default: 1)")
    sel.add_argument("--sample-size", type=_sample_size, default="auto",
                     help="rows the silhouette is computed on (default: auto, all up "
                     "to 10000, else a random 10000)")
    sel.add_argument("--plot", metavar="PNG", help="write the elbow plot (needs matplotlib)")
    sel.set_defaults(handler=_cmd_select_k)

    quant = commands.add_parser("quantize", parents=[common, output],
                                help="reduce an image to k colours (needs Pillow)",
                                description="Colour-quantise an image with k-means.")
    quant.add_argument("image", metavar="IMAGE", help="input image (PNG, JPEG, ...)")
    quant.add_argument("-k", type=_positive_int, default=16, help="colours (default: 16)")
    quant.add_argument("-o", "--output", required=True,
                       help="output image; its extension gives the format")
    quant.add_argument("--sample-size", type=_positive_int, default=50_000,
                       help="pixels the palette is fitted on, at least -k (default: 50000)")
    quant.add_argument("--max-iter", type=_positive_int, default=100,
                       help="most Lloyd iterations of the palette fit (default: 100)")
    quant.set_defaults(handler=_cmd_quantize)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("KMEANS_XP_DEBUG"):
            raise
        known = isinstance(
            exc, (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError)
        )
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        prefix = "error" if known else f"internal error ({type(exc).__name__})"
        print(f"{PROG}: {prefix}: {message}", file=sys.stderr)
        return 1
