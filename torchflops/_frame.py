"""A profile as a ``pandas.DataFrame`` (pandas is an optional extra: ``pip install torchflops[pandas]``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ._counts import FIELDS, ZERO
from ._profile import ProfileData
from ._render import OUTSIDE, _check_count, _Row, _shapes_text, rows

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = ["to_pandas", "OTHER"]

# the row that holds parameters no counted call used (a class token, a module never called)
OTHER = OUTSIDE     # parameters no counted call used, bytes no record holds


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("Profile.to_pandas needs pandas, an optional extra: "
                          "pip install 'torchflops[pandas]' (or pip install pandas)") from None
    return pandas


def _first_holders(profile: ProfileData, body: list[_Row]) -> tuple[list[int], int]:
    """Each unique parameter credited to the first row whose module holds it, so the column sums
    to ``total.params``; and what no row holds."""
    seen: set[int] = set()
    credited = []
    for row in body:
        module = profile._modules.get(row.name) if row.type == profile.module_type(row.name) else None
        fresh = 0
        for parameter in module.parameters() if module is not None else ():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                fresh += parameter.numel()
        credited.append(fresh)
    rest = sum(p.numel() for p in profile._model.parameters() if id(p) not in seen)
    return credited, rest


def to_pandas(profile: ProfileData, depth: Optional[int] = None) -> "pandas.DataFrame":
    """One row per record (or, with ``depth``, per folded module), exact int64 count columns that
    sum to ``profile.total``.

    ``params`` credits each unique parameter once, to the first row whose module holds it;
    parameters no counted call used, and the bytes of work no record holds, get one more row,
    named ``OTHER``.
    ``module_params`` is each row's module's own parameters (repeated per call, as in ``records``).
    """
    pd = _pandas()
    _check_count(depth, "depth", 0)
    body = rows(profile, depth)
    credited, rest = _first_holders(profile, body)
    columns: dict[str, list[Any]] = {name: [] for name in
                                     ("name", "type", "input_shapes", "output_shapes", *FIELDS, "module_params")}
    for row, params in zip(body, credited):
        values: dict[str, Any] = {**row.counts.as_dict(), "params": params, "module_params": row.counts.params,
                                  "name": row.name, "type": row.type, "input_shapes": _shapes_text(row.input_shapes),
                                  "output_shapes": _shapes_text(row.output_shapes)}
        for name, column in columns.items():
            column.append(values[name])
    other = profile.outside_records
    if rest or other != ZERO:
        extra = {**other.as_dict(), "name": OTHER, "type": "", "input_shapes": "", "output_shapes": "",
                 "params": rest}
        for name, column in columns.items():
            column.append(extra.get(name, 0))
    text = ("name", "type", "input_shapes", "output_shapes")
    return pd.DataFrame({name: pd.Series(values, dtype="string" if name in text else "int64")
                         for name, values in columns.items()})
