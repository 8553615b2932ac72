"""Motion patterns and the frame renderer behind ``lsvit-pipeline synth``.

Each class is a motion pattern, never a look: shape, colour, size, position, background and photometry are
drawn per clip independently of the class, so a single frame says little about the class. Most patterns
come in time-reversed pairs (left/right, grow/shrink, converge/diverge, accelerate/decelerate, clockwise/
anticlockwise), so a clip played backwards looks like another class rather than its own.
"""

import numpy as np

HEIGHT, WIDTH = 240, 320
SHAPES = ("disc", "square", "bar")
_TAU = 2 * np.pi


def _motions() -> list[tuple]:
    """The 51 motion patterns, one per class in sorted class order: ``(kind, *params)``."""
    m: list[tuple] = [("linear", a, v) for v in (1.5, 4.0) for a in range(0, 360, 45)]  # 16
    m += [("accel", a, s) for a in (0, 90) for s in (1, -1)]  # 4: speeding up vs slowing down
    m += [("oscillate", a, p) for a in (0, 45, 90, 135) for p in (12, 32)]  # 8: axis x period
    m += [("orbit", d, p) for d in (1, -1) for p in (30, 80)]  # 4: direction x period
    m += [("spin", 1), ("spin", -1), ("scale", 1), ("scale", -1), ("pulse",)]
    m += [("zigzag", a) for a in (0, 90, 180, 270)]
    m += [("pair", a, s) for a in (0, 90) for s in (1, -1)]  # 4: two objects diverging / converging
    m += [("hop", 1), ("hop", -1), ("spiral", 1), ("spiral", -1), ("stopgo", 0), ("shake",)]
    return m


MOTIONS = _motions()
assert len(MOTIONS) == 51


def _saw(t: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """A 0 -> 1 ramp repeating every ``period`` frames, from a random phase."""
    return ((t + rng.uniform(0, period)) % period) / period


def _dir(angle_deg: float) -> tuple[float, float]:
    a = np.deg2rad(angle_deg)
    return float(np.cos(a)), -float(np.sin(a))  # image y points down; angles are anticlockwise


def trajectories(motion: tuple, t: np.ndarray, rng: np.random.Generator, size: float) -> list[np.ndarray]:
    """Object tracks for one clip.

    Args:
        motion: An entry of ``MOTIONS``.
        t: Frame times ``0..T-1`` as floats.
        rng: The clip's generator.
        size: The object's base half-size in pixels.

    Returns:
        One ``(4, T)`` array per object: centre x, centre y, half-size, angle (radians). Tracks that run
        off the frame wrap around.
    """
    kind, *p = motion
    speed = rng.uniform(0.8, 1.25)  # per-clip jitter so speed classes overlap a little
    ang = np.full_like(t, rng.uniform(0, np.pi))
    rad = np.full_like(t, size)
    free = rng.uniform((0, 0), (WIDTH, HEIGHT))  # anywhere: for tracks that wrap

    def fit(reach: float) -> np.ndarray:  # a centre that keeps a track of this reach inside the frame
        lo = np.minimum(reach + size, (WIDTH / 2, HEIGHT / 2))
        return rng.uniform(lo, (WIDTH - lo[0], HEIGHT - lo[1]))

    def along(angle: float, dist: np.ndarray, start: np.ndarray) -> list[np.ndarray]:
        dx, dy = _dir(angle)
        return [np.stack([start[0] + dx * dist, start[1] + dy * dist, rad, ang])]

    if kind == "linear":
        return along(p[0], p[1] * speed * t, free)
    if kind == "accel":  # speed ramps 0 -> 5 px/frame (or down), restarting every 45 frames
        ramp = _saw(t, 45, rng)
        return along(p[0], np.cumsum(5 * speed * (ramp if p[1] > 0 else 1 - ramp)), free)
    if kind == "stopgo":
        return along(p[0], np.cumsum(3 * speed * (_saw(t, 30, rng) < 0.5)), free)
    if kind == "zigzag":
        dx, dy = _dir(p[0])
        tri = 25 * (2 * np.abs(2 * _saw(t, 20, rng) - 1) - 1)
        d = 2.5 * speed * t
        return [np.stack([free[0] + dx * d - dy * tri, free[1] + dy * d + dx * tri, rad, ang])]
    if kind == "oscillate":
        amp = rng.uniform(30, 60)
        return along(p[0], amp * np.sin(_TAU * t / (p[1] * speed) + rng.uniform(0, _TAU)), fit(amp))
    if kind in ("orbit", "spiral"):
        if kind == "orbit":
            r, period, direction = rng.uniform(30, 70), p[1] * speed, p[0]
        else:  # radius sweeps out (or in) while circling anticlockwise
            ramp = _saw(t, 60, rng)
            r, period, direction = 8 + 70 * (ramp if p[0] > 0 else 1 - ramp), 30 * speed, 1
        c, a = fit(78 if kind == "spiral" else r), rng.uniform(0, _TAU) + direction * _TAU * t / period
        return [np.stack([c[0] + r * np.cos(a), c[1] - r * np.sin(a), rad, ang])]
    if kind == "spin":
        c = fit(1.8 * size)
        spin = ang - p[0] * _TAU * t / (40 * speed)  # positive p: anticlockwise on screen
        return [np.stack([np.full_like(t, c[0]), np.full_like(t, c[1]), rad, spin])]
    if kind in ("scale", "pulse"):
        c = fit(45)
        if kind == "scale":
            ramp = _saw(t, 40, rng)
            rad = 8 + 37 * (ramp if p[0] > 0 else 1 - ramp)
        else:
            rad = size * (1 + 0.45 * np.sin(_TAU * t / (20 * speed) + rng.uniform(0, _TAU)))
        return [np.stack([np.full_like(t, c[0]), np.full_like(t, c[1]), rad, ang])]
    if kind == "hop":  # hops along the ground while drifting left or right
        x = free[0] + p[0] * 2 * speed * t
        y = rng.uniform(150, HEIGHT - size) - 90 * np.abs(np.sin(np.pi * _saw(t, 24, rng)))
        return [np.stack([x, y, rad, ang])]
    if kind == "pair":  # two objects moving apart (or together) along an axis, again and again
        ramp = _saw(t, 45, rng)
        half = 5 + 55 * (ramp if p[1] > 0 else 1 - ramp)
        c, (dx, dy) = fit(60), _dir(p[0])
        return [np.stack([c[0] + s * dx * half, c[1] + s * dy * half, rad, ang]) for s in (1, -1)]
    if kind == "shake":
        c = fit(10)
        jitter = rng.normal(0, 5, (2, t.size))
        return [np.stack([c[0] + jitter[0], c[1] + jitter[1], rad, ang])]
    raise AssertionError(f"unknown motion {kind!r}")


def _alpha(shape: str, u: np.ndarray, v: np.ndarray, half: float, soft: float) -> np.ndarray:
    """Anti-aliased coverage of a shape centred at 0 in rotated coordinates ``u``, ``v``."""
    if shape == "disc":
        dist = np.hypot(u, v)
    elif shape == "square":
        dist = np.maximum(np.abs(u), np.abs(v))
    else:  # a bar 1.8x longer and 1.8x thinner than the square
        dist = np.maximum(np.abs(u) / 1.8, np.abs(v) * 1.8)
    return np.clip((half - dist) / soft + 0.5, 0, 1)


def _stamp(img: np.ndarray, x: float, y: float, half: float, angle: float, shape: str, colour, soft) -> None:
    """Composites one object into ``img`` (H, W, 3 float32) in place, touching only its bounding box."""
    reach = 1.8 * half + soft + 1
    x0, x1 = max(int(x - reach), 0), min(int(x + reach) + 2, img.shape[1])
    y0, y1 = max(int(y - reach), 0), min(int(y + reach) + 2, img.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(x)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(y)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    a = _alpha(shape, dx * c + dy * s, dy * c - dx * s, half, soft)[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + colour * a


def _smooth_field(rng: np.random.Generator, waves: int = 4) -> np.ndarray:
    """A smooth random (H, W) texture in about [-1, 1]: a few low-frequency separable waves."""
    fy, fx = rng.uniform(0.5, 4, (2, waves)) * _TAU / np.array([[HEIGHT], [WIDTH]])
    py, px = rng.uniform(0, _TAU, (2, waves))
    rows = np.cos(np.arange(HEIGHT)[:, None] * fy + py)
    cols = np.cos(np.arange(WIDTH)[:, None] * fx + px)
    return rows @ cols.T / np.sqrt(waves)


def render_clip(motion: tuple, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Renders one clip of ``motion`` with per-clip random appearance and photometry.

    Args:
        motion: An entry of ``MOTIONS``.
        num_frames: Frames to render.
        rng: The clip's generator; the same generator state gives the same frames.

    Returns:
        ``(num_frames, 240, 320, 3)`` uint8 RGB frames.
    """
    sharp = rng.random() < 0.7  # the rest are blurry: soft edges, smooth texture, no grain
    soft = rng.uniform(0.7, 1.5) if sharp else rng.uniform(3, 8)
    contrast, gain = rng.uniform(0.3, 1.0), rng.uniform(0.35, 1.1)  # low-contrast and dark clips

    # Background: a colour, a smooth random field, optional fine grain, optional static distractor.
    base = rng.uniform(0.1, 0.9, 3)
    field = _smooth_field(rng)
    bg = base + rng.uniform(0.02, 0.2) * field[..., None] * rng.uniform(0.5, 1.0, 3)
    if sharp:
        bg = bg + rng.uniform(0, 0.06) * rng.normal(size=(HEIGHT, WIDTH, 1))
    bg = bg.astype(np.float32)
    if rng.random() < 0.5:
        xy = rng.uniform((20, 20), (WIDTH - 20, HEIGHT - 20))
        _stamp(bg, *xy, rng.uniform(8, 30), rng.uniform(0, np.pi), rng.choice(SHAPES), rng.random(3), soft)

    size, shape = rng.uniform(10, 28), str(rng.choice(SHAPES))
    if motion[0] == "spin":  # a disc would not show its rotation
        shape = str(rng.choice(SHAPES[1:]))
    tracks = trajectories(motion, np.arange(num_frames, dtype=np.float64), rng, size)
    colours = []
    for _ in tracks:  # keep each object visibly apart from the background's mean colour
        colour = rng.random(3)
        if abs(colour.mean() - base.mean()) < 0.2:
            colour = np.clip(colour + np.sign(colour.mean() - base.mean() or 1) * 0.35, 0, 1)
        colours.append(colour.astype(np.float32))
    pad = 1.8 * 45 + soft + 1
    for tr in tracks:  # wrap tracks that leave the frame so the object comes back on the other side
        tr[0] = (tr[0] + pad) % (WIDTH + 2 * pad) - pad
        tr[1] = (tr[1] + pad) % (HEIGHT + 2 * pad) - pad

    # One LUT applies contrast and brightness: cheaper than float maths on every pixel of every frame.
    lut = np.clip((0.5 + contrast * (np.linspace(0, 1, 1024) - 0.5)) * gain * 255 + 0.5, 0, 255)
    lut = lut.astype(np.uint8)

    def to_u8(img: np.ndarray) -> np.ndarray:
        return lut[np.clip(img * 1023, 0, 1023).astype(np.int16)]

    backgrounds = to_u8(bg)[None]
    if rng.random() < 0.3:  # sensor-like noise that changes from frame to frame, from a pool of 4 fields
        amp = int(rng.integers(3, 10))
        noise = rng.integers(-amp, amp + 1, size=(4, HEIGHT, WIDTH, 3), dtype=np.int16)
        backgrounds = np.clip(backgrounds + noise, 0, 255).astype(np.uint8)
    out = backgrounds[np.arange(num_frames) % len(backgrounds)]
    for i in range(num_frames):  # redraw only the box around the moving objects
        xs, ys, halves = (np.array([tr[k, i] for tr in tracks]) for k in range(3))
        reach = 1.8 * halves + soft + 2
        x0, x1 = int(max((xs - reach).min(), 0)), int(min((xs + reach).max() + 2, WIDTH))
        y0, y1 = int(max((ys - reach).min(), 0)), int(min((ys + reach).max() + 2, HEIGHT))
        if x0 >= x1 or y0 >= y1:
            continue
        crop = bg[y0:y1, x0:x1].copy()
        for tr, colour in zip(tracks, colours, strict=True):
            _stamp(crop, tr[0, i] - x0, tr[1, i] - y0, tr[2, i], tr[3, i], shape, colour, soft)
        patch = to_u8(crop)
        if len(backgrounds) > 1:
            patch = np.clip(patch + noise[i % 4, y0:y1, x0:x1], 0, 255)
        out[i, y0:y1, x0:x1] = patch
    return out
