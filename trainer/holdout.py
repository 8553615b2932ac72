"""The validation hold-out: part of the training clips, whole source videos at a time, picked by a fixed rule.

Model selection (``best.pt``, early stopping) must never look at the test split, so it looks at clips held
out of the training subset instead. Per class, the clips' source-video groups
(:func:`lsvit.pipeline.groups.source_group`) are taken in the order of ``sha1("<class>/<group>")`` and a
group joins validation when that brings the class's validation count closer to ``fraction`` of its clips
(a too-large group is skipped, a later smaller one may fit); at least one group per class stays in
training. The rule depends only on the clip names and the fraction: the same clips for every ``--seed``,
rank and machine, so runs that differ only in seed are selected on the same clips.
"""

import hashlib
from collections import defaultdict
from collections.abc import Mapping

from lsvit.pipeline.groups import key_stem, source_group


def group_keys(key_class: Mapping[str, str]) -> dict[str, dict[str, list[str]]]:
    """Keys per class and source-video group.

    Args:
        key_class: Sample key -> class name (keys as written by extract).

    Returns:
        ``{class: {group: [keys, sorted]}}``.
    """
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key in sorted(key_class):
        cls = key_class[key]
        out[cls][source_group(key_stem(key, cls))].append(key)
    return {c: dict(g) for c, g in out.items()}


def _order(cls: str, group: str) -> str:
    return hashlib.sha1(f"{cls}/{group}".encode()).hexdigest()


def holdout_keys(key_class: Mapping[str, str], fraction: float) -> frozenset[str]:
    """The training keys held out for validation.

    Args:
        key_class: Every key of the training subset -> its class.
        fraction: Share of each class's clips to hold out, in [0, 1); 0 holds out nothing.

    Returns:
        The validation keys; all other keys are trained on.

    Raises:
        ValueError: ``fraction`` outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1)")
    if fraction == 0.0:
        return frozenset()
    val: list[str] = []
    for cls, groups in group_keys(key_class).items():
        target = fraction * sum(len(k) for k in groups.values())
        taken, left = 0, len(groups)
        for group in sorted(groups, key=lambda g, c=cls: _order(c, g)):
            if taken >= target or left == 1:
                break
            size = len(groups[group])
            if size < 2 * (target - taken):  # |taken + size - target| < |taken - target|
                val += groups[group]
                taken += size
                left -= 1
    return frozenset(val)
