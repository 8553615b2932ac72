"""Motion patterns and the frame renderer behind ``lsvit-pipeline synth``.

Each class is a motion pattern, never a look. Every clip shows one object whose shape, colour, size, angle and
edge softness, the background, and the place of the path in the frame are drawn per clip, independently of
the class; the classes that change the object's size sweep the same size range the others draw from. So a
single frame says nothing about the class.

Motions are defined in normalised clip time ``u = (t + 0.5) / T`` (pixels and cycles per clip, not per frame):
a class travels as far and turns as often in a 15-frame clip as in a 120-frame one, so the frames that
``extract`` samples uniformly over a clip look alike whatever its length. No motion repeats more than twice a
clip, so 8 sampled frames (4 a cycle) cannot alias. Every path keeps the object's centre at least one object
size inside the 240x240 centre crop that evaluation sees (the middle of the 320x240 frame). Objects are
lighter than the background by a floor, and large (36 to 72 px across): still 7 px or more at the demo's 48 px
input. Texture, noise and class-dependent looks are absent on purpose: they made no difference to what a model
learns, only to synth time.

Most classes come in time-reversed pairs (left/right, grow/shrink, clockwise/anticlockwise, accelerating
right/slowing down leftwards, coming closer rightwards/going away leftwards), so a clip played backwards is
another class.
"""

import numpy as np

HEIGHT, WIDTH = 240, 320
CROP = (40.0, 0.0, 280.0, 240.0)  # x0, y0, x1, y1 of the centre crop evaluation keeps
SHAPES = ("disc", "square", "bar")
REACH = {"disc": 1.0, "square": 2**0.5, "bar": float(np.hypot(1.8, 1 / 1.8))}  # farthest point / half-size
SIZE = (18.0, 36.0)  # the object's half-size range in pixels, for every class
SLOW, FAST = 75.0, 150.0  # pixels a clip of the slow and the fast translations
DRIFT = 110.0  # pixels a clip of the translations that also change size
_TAU = 2 * np.pi

# Class -> (kind, *params); directions in degrees, anticlockwise from "right". The names are HMDB51's; the
# motions only loosely evoke them.
MOTIONS: dict[str, tuple] = {
    # translation, 8 directions x 2 speeds (opposite directions are time-reversed pairs)
    "walk": ("linear", 0, SLOW), "climb_stairs": ("linear", 45, SLOW), "stand": ("linear", 90, SLOW),
    "climb": ("linear", 135, SLOW), "push": ("linear", 180, SLOW), "pour": ("linear", 225, SLOW),
    "sit": ("linear", 270, SLOW), "pick": ("linear", 315, SLOW),
    "run": ("linear", 0, FAST), "throw": ("linear", 45, FAST), "jump": ("linear", 90, FAST),
    "shoot_bow": ("linear", 135, FAST), "ride_horse": ("linear", 180, FAST), "dive": ("linear", 225, FAST),
    "fall_floor": ("linear", 270, FAST), "kick_ball": ("linear", 315, FAST),
    # speeding up (+1) or slowing down (-1): accelerating right is slowing down leftwards played backwards
    "ride_bike": ("accel", 0, 1), "catch": ("accel", 180, -1), "punch": ("accel", 180, 1), "hug": ("accel", 0, -1),
    # back and forth along an axis, 1 or 2 cycles a clip
    "sword_exercise": ("oscillate", 0, 1), "wave": ("oscillate", 0, 2), "fencing": ("oscillate", 45, 1),
    "sword": ("oscillate", 45, 2), "pullup": ("oscillate", 90, 1), "pushup": ("oscillate", 90, 2),
    "swing_baseball": ("oscillate", 135, 1), "dribble": ("oscillate", 135, 2),
    # circling anticlockwise (+1) or clockwise (-1), 1 or 2 turns a clip
    "cartwheel": ("orbit", 1, 1), "flic_flac": ("orbit", -1, 1), "somersault": ("orbit", 1, 2),
    "handstand": ("orbit", -1, 2),
    # half a clip one way, then a right-angle turn to the left (+1) or right (-1)
    "turn": ("turn", 0, 1), "draw_sword": ("turn", 0, -1), "shoot_gun": ("turn", 90, 1), "kick": ("turn", 90, -1),
    "hit": ("turn", 180, 1), "brush_hair": ("turn", 180, -1), "situp": ("turn", 270, 1), "golf": ("turn", 270, -1),
    # standing still while growing (+1), shrinking (-1) or pulsing twice
    "laugh": ("scale", 1), "smile": ("scale", -1), "chew": ("pulse",),
    # drifting while growing (+1, coming closer) or shrinking (-1, going away)
    "shake_hands": ("drift", 0, 1), "smoke": ("drift", 0, -1), "drink": ("drift", 180, 1), "eat": ("drift", 180, -1),
    "clap": ("drift", 90, 1), "talk": ("drift", 90, -1), "shoot_ball": ("drift", 270, 1), "kiss": ("drift", 270, -1),
}  # fmt: skip
assert len(MOTIONS) == 51


def _dir(angle_deg: float) -> tuple[float, float]:
    a = np.deg2rad(angle_deg)
    return float(np.cos(a)), -float(np.sin(a))  # image y points down; angles are anticlockwise


def path(motion: tuple, u: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The object's track relative to an arbitrary origin, before it is placed in the frame.

    Args:
        motion: A value of ``MOTIONS``.
        u: Normalised frame times in [0, 1).
        rng: The clip's generator (speed, angle, phase and size jitter).

    Returns:
        Centre x, centre y and half-size in pixels, each shaped like ``u``.
    """
    kind, *p = motion
    gain = rng.uniform(0.9, 1.1)  # per-clip jitter; the two speeds stay at least 1.6x apart
    turn = rng.uniform(-8, 8)  # degrees; directions 45 degrees apart stay at least 29 apart
    phase = rng.uniform(0, _TAU)
    half = np.full_like(u, rng.uniform(*SIZE))
    zero = np.zeros_like(u)

    def along(angle: float, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = _dir(angle + turn)
        return dx * dist, dy * dist

    if kind == "linear":
        return *along(p[0], p[1] * gain * (u - 0.5)), half
    if kind == "accel":  # the same distance as the fast translation, from rest or to rest
        s = u**2 if p[1] > 0 else 1 - (1 - u) ** 2
        return *along(p[0], FAST * gain * (s - 0.5)), half
    if kind == "oscillate":
        return *along(p[0], rng.uniform(45, 60) * np.sin(_TAU * p[1] * u + phase)), half
    if kind == "turn":
        leg = 0.55 * FAST * gain
        x1, y1 = along(p[0], leg * np.minimum(u, 0.5) * 2)
        x2, y2 = along(p[0] + 90 * p[1], leg * np.maximum(u - 0.5, 0) * 2)
        return x1 + x2, y1 + y2, half
    if kind == "orbit":
        r, a = rng.uniform(40, 60), phase + p[0] * p[1] * _TAU * u
        return r * np.cos(a), -r * np.sin(a), half
    if kind in ("scale", "drift"):  # sweeps the whole size range, so a frame's size does not tell the class
        lo, hi = SIZE
        half = lo + (hi - lo) * (u if p[-1] > 0 else 1 - u)
        return (*along(p[0], DRIFT * gain * (u - 0.5)), half) if kind == "drift" else (zero, zero, half)
    if kind == "pulse":
        mid, amp = sum(SIZE) / 2, (SIZE[1] - SIZE[0]) / 2
        return zero, zero, mid + amp * np.sin(2 * _TAU * u + phase)
    raise AssertionError(f"unknown motion {kind!r}")


def place(x: np.ndarray, y: np.ndarray, half: np.ndarray, rng: np.random.Generator) -> tuple:
    """Shifts a track to a random place where its centre stays one half-size inside the centre crop."""
    x0, y0, x1, y1 = CROP
    lo_x, hi_x = x0 - (x - half).min(), x1 - (x + half).max()
    lo_y, hi_y = y0 - (y - half).min(), y1 - (y + half).max()
    # Every motion fits (a test checks it); were one not to, it would be centred rather than fail.
    ox = rng.uniform(lo_x, hi_x) if lo_x <= hi_x else (lo_x + hi_x) / 2
    oy = rng.uniform(lo_y, hi_y) if lo_y <= hi_y else (lo_y + hi_y) / 2
    return x + ox, y + oy


def _alpha(shape: str, u: np.ndarray, v: np.ndarray, half: np.ndarray, soft: float) -> np.ndarray:
    """Anti-aliased coverage of a shape centred at 0 in rotated coordinates ``u``, ``v``."""
    if shape == "disc":
        dist = np.hypot(u, v)
    elif shape == "square":
        dist = np.maximum(np.abs(u), np.abs(v))
    else:  # a bar 1.8x longer and 1.8x thinner than the square
        dist = np.maximum(np.abs(u) / 1.8, np.abs(v) * 1.8)
    return np.clip((half - dist) / soft + 0.5, 0, 1)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark background colour and an object colour at least 0.45 lighter on average (0-1 RGB)."""
    lum_bg = rng.uniform(0.02, 0.3)
    hue = rng.uniform(0.2, 1.0, 3)
    bg = np.clip(hue * lum_bg / hue.mean(), 0, 1)
    lum_obj = rng.uniform(lum_bg + 0.45, 1.0)
    tint = rng.uniform(0.0, 1.0, 3)
    obj = np.clip(1 - (1 - tint) * (1 - lum_obj) / max(1 - tint.mean(), 1e-3), 0, 1)
    return bg, obj


def render_clip(motion: tuple, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Renders one clip of ``motion`` with per-clip random appearance.

    Args:
        motion: A value of ``MOTIONS``.
        num_frames: Frames to render.
        rng: The clip's generator; the same generator state gives the same frames.

    Returns:
        ``(num_frames, 240, 320, 3)`` uint8 RGB frames.
    """
    shape, angle = str(rng.choice(SHAPES)), rng.uniform(0, np.pi)
    soft = rng.uniform(0.7, 2.5)  # edge width in pixels: sharp to slightly blurry
    bg_rgb, obj_rgb = _colours(rng)
    u = (np.arange(num_frames) + 0.5) / num_frames
    x, y, half = path(motion, u, rng)
    x, y = place(x, y, half, rng)

    # A flat colour with a gentle linear gradient: texture and noise cost encoding time and teach nothing.
    slope = rng.uniform(-0.04, 0.04, 2)
    ramp = slope[0] * np.linspace(-1, 1, WIDTH)[None, :] + slope[1] * np.linspace(-1, 1, HEIGHT)[:, None]
    bg = np.clip((bg_rgb + ramp[..., None]) * 255 + 0.5, 0, 255).astype(np.uint8)
    # Channel-first memory seen as (T, H, W, 3): the layout the encoder takes, so writing needs no copy.
    planes = np.empty((num_frames, 3, HEIGHT, WIDTH), np.uint8)
    planes[:] = bg.transpose(2, 0, 1)
    frames = planes.transpose(0, 2, 3, 1)

    # Coverage of every frame's object at once, on a box of the same size around each integer centre.
    r = int(np.ceil(REACH[shape] * half.max() + soft + 1))
    ix, iy = np.floor(x).astype(int), np.floor(y).astype(int)
    grid = np.arange(-r, r + 2, dtype=np.float32)
    dx = grid[None, None, :] + (ix - x).astype(np.float32)[:, None, None]  # (T, 1, S)
    dy = grid[None, :, None] + (iy - y).astype(np.float32)[:, None, None]  # (T, S, 1)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    alpha = _alpha(shape, dx * c + dy * s, dy * c - dx * s, half.astype(np.float32)[:, None, None], soft)
    colour = (obj_rgb * 255).astype(np.float32)
    for t in range(num_frames):  # paste each box, cut to the frame
        x0, y0 = ix[t] - r, iy[t] - r
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + alpha.shape[2], WIDTH), min(y0 + alpha.shape[1], HEIGHT)
        a = alpha[t, fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
        box = frames[t, fy0:fy1, fx0:fx1].astype(np.float32)
        frames[t, fy0:fy1, fx0:fx1] = (box + (colour - box) * a + 0.5).astype(np.uint8)
    return frames
