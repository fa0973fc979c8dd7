"""A deterministic generator of street-like scenes in the real Cityscapes layout (the project's demo data).

Nothing can be downloaded where this project is built and tested, so the main job and the tests train on
scenes drawn here. Each scene is a list of polygons with Cityscapes label names, written as
``gtFine/{split}/{city}/{city}_{seq}_000019_gtFine_polygons.json`` next to
``leftImg8bit/{split}/{city}/{city}_{seq}_000019_leftImg8bit.png``; labels are then made by cityscapesscripts'
json2labelImg (``dataset/createTrainIdLabelImgs.py``) exactly as for Cityscapes.

A scene has a perspective road with lane marks and sidewalks, facades with windows, walls and fences, sky, far
skyline, trees, terrain strips, poles with signs and traffic lights, cars, trucks, buses, trams (train), people,
riders on bicycles and motorcycles, and sometimes the ego vehicle (ignored, as in Cityscapes). Every object
gets a jittered colour from overlapping palettes (grey cars on a grey road, green terrain next to green trees),
a texture, shading, cast shadows, and the whole image gets illumination changes and sensor noise, so colour
alone does not give the label while the spatial layout and textures make the task learnable.

Image and label agree pixel for pixel: each object's image region is the mask drawn by PIL's
``ImageDraw.polygon`` from the very polygon stored in the JSON, the call json2labelImg makes.

Default size (justification): 256x512 images (128x256 after the search's down_sampling 2; both multiples of
32), 24 train / 8 val / 8 test. Train must split into two disjoint halves for the search (12 + 12) and feed
batches of 2-3; 8 val images give a stable mIoU; every class appears in train by construction (the rare
classes follow a schedule over the image index). Generating all 40 takes about a second or two on one core,
and the whole search + train pipeline on these sizes runs on 2 CPU cores in minutes.
"""
import os
import time

import cv2
import numpy as np
from PIL import Image, ImageDraw

from tools.utils.fileio import write_json, write_png

DEMO_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",)}
DEFAULT_COUNTS = {"train": 24, "val": 8, "test": 8}
DEFAULT_SIZE = (256, 512)
FRAME = 19

SKY_COLORS = [(120, 160, 215), (170, 190, 210), (200, 205, 210), (140, 175, 225)]
BUILDING_COLORS = [(150, 140, 125), (175, 160, 140), (120, 115, 110), (150, 90, 70), (200, 190, 170),
                   (105, 105, 115), (165, 150, 120)]
VEHICLE_COLORS = [(90, 90, 95), (200, 200, 205), (25, 25, 30), (150, 30, 30), (30, 55, 120), (140, 140, 145),
                  (230, 230, 225), (60, 90, 60), (110, 100, 80)]
CLOTHES = [(30, 30, 40), (150, 40, 40), (40, 60, 130), (200, 190, 170), (90, 90, 90), (60, 100, 60),
           (180, 150, 50), (120, 80, 50)]


class Scene:
    """Objects (label, polygon, painter) in drawing order, plus the float RGB canvas they are painted on."""

    def __init__(self, rng, height, width):
        self.rng = rng
        self.height = height
        self.width = width
        self.objects = []
        self.image = np.zeros((height, width, 3), np.float32)
        self.noise = {k: _noise_field(rng, height, width, k) for k in (1, 4, 16)}

    def add(self, label, points, painter):
        polygon = [[int(round(x)), int(round(y))] for x, y in points]
        self.objects.append((label, polygon, painter))

    def render(self):
        for label, polygon, painter in self.objects:
            region = Region(self, polygon)
            if not region.empty:
                painter(region)
        return self.image


class Region:
    """One polygon's bounding box: its mask, dense coordinates and noise there, and a masked colour setter.

    Painters compute colours densely over the box (fast numpy broadcasting) and ``set`` copies them where
    the mask is true; ``ys`` is a column and ``xs`` a row of absolute pixel coordinates.
    """

    def __init__(self, scene, polygon):
        self.scene = scene
        self.mask, (y0, x0) = polygon_mask(polygon, scene.height, scene.width, crop=True)
        h, w = self.mask.shape
        self.box = (slice(y0, y0 + h), slice(x0, x0 + w))
        self.ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        self.xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :]

    @property
    def empty(self):
        return not self.mask.any()

    def extent(self):
        """(y_min, y_max, x_min, x_max) of the masked pixels."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        return (self.ys[rows[0], 0], self.ys[rows[-1], 0], self.xs[0, cols[0]], self.xs[0, cols[-1]])

    def texture(self, coarse=0.0, medium=0.0, fine=0.0):
        out = np.ones(self.mask.shape, np.float32)
        for amount, cell in ((coarse, 16), (medium, 4), (fine, 1)):
            if amount:
                out += np.float32(amount) * self.scene.noise[cell][self.box]
        return out

    def set(self, colors):
        target = self.scene.image[self.box]
        colors = np.broadcast_to(np.asarray(colors, np.float32), target.shape)
        np.copyto(target, colors, where=self.mask[:, :, None])


def polygon_mask(polygon, height, width, crop=False):
    """The pixels json2labelImg fills for this polygon (same PIL call, same integer vertices).

    With ``crop`` the mask is cut to the polygon's bounding box (clipped to the image) and returned with
    the box's top-left corner; drawing always happens on the full canvas, so the pixels are the same.
    """
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    if not crop:
        return np.asarray(canvas, dtype=bool)
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    x0, y0 = min(max(min(xs) - 1, 0), width), min(max(min(ys) - 1, 0), height)
    x1, y1 = min(max(max(xs) + 2, 0), width), min(max(max(ys) + 2, 0), height)
    return np.asarray(canvas.crop((x0, y0, x1, y1)), dtype=bool), (y0, x0)


def _noise_field(rng, height, width, cell):
    """Zero-mean noise with features about ``cell`` pixels large (bilinear upsampling of a coarse grid)."""
    if cell == 1:
        return rng.standard_normal((height, width), dtype=np.float32)
    small = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _jitter(rng, color, amount=18):
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def flat(color, coarse=0.0, medium=0.0, fine=0.0):
    """A painter: base colour modulated by the scene's noise fields at three scales."""
    color = np.asarray(color, np.float32)

    def paint(region):
        region.set(color * region.texture(coarse, medium, fine)[:, :, None])
    return paint


def banded(color_top, color_bottom, fine=0.0, coarse=0.0):
    """A vertical colour gradient over the object's height (sky, clothes, traffic lights)."""
    top, bottom = np.asarray(color_top, np.float32), np.asarray(color_bottom, np.float32)

    def paint(region):
        y0, y1, _, _ = region.extent()
        frac = np.clip((region.ys - y0) / max(1.0, y1 - y0), 0, 1)[:, :, None]
        region.set((top * (1 - frac) + bottom * frac) * region.texture(coarse, 0.0, fine)[:, :, None])
    return paint


def striped(color, stripe_color, period, fine=0.05):
    """Vertical stripes (a fence's lattice)."""
    color, stripe_color = np.asarray(color, np.float32), np.asarray(stripe_color, np.float32)

    def paint(region):
        on = ((region.xs // max(1, period)) % 2 == 0)[:, :, None]
        region.set(np.where(on, stripe_color, color) * region.texture(fine=fine)[:, :, None])
    return paint


def windows(base, glass, rows, cols, fine=0.04):
    """A facade: wall colour with a grid of darker windows laid out over the object's extent."""
    base, glass = np.asarray(base, np.float32), np.asarray(glass, np.float32)

    def paint(region):
        y0, y1, x0, x1 = region.extent()
        fy = ((region.ys - y0) / max(1.0, y1 - y0 + 1) * rows) % 1
        fx = ((region.xs - x0) / max(1.0, x1 - x0 + 1) * cols) % 1
        inside = ((fy > 0.3) & (fy < 0.8) & (fx > 0.25) & (fx < 0.75))[:, :, None]
        region.set(np.where(inside, glass, base) * region.texture(coarse=0.08, fine=fine)[:, :, None])
    return paint


class Street:
    """Perspective geometry: depth ``t`` in (0, 1] maps the horizon (t=0) to the image bottom (t=1)."""

    def __init__(self, rng, height, width):
        self.h, self.w = height, width
        self.y_h = height * rng.uniform(0.36, 0.46)
        self.x_v = width * rng.uniform(0.42, 0.58)
        self.road = (self.x_v - width * rng.uniform(0.42, 0.62), self.x_v + width * rng.uniform(0.42, 0.62))
        self.walk = (self.road[0] - width * rng.uniform(0.18, 0.35), self.road[1] + width * rng.uniform(0.18, 0.35))
        self.top = width * 0.006

    def y(self, t):
        return self.y_h + (self.h - self.y_h) * t

    def x(self, x_bottom, t, offset=0.0):
        """A line through the vanishing point and ``x_bottom`` at the image bottom, at depth t."""
        side = -1 if x_bottom < self.x_v else 1
        return self.x_v + side * self.top * (1 - t) + (x_bottom - self.x_v) * t + offset

    def road_x(self, fraction, t):
        left, right = self.x(self.road[0], t), self.x(self.road[1], t)
        return left + fraction * (right - left), right - left


def make_scene(rng, height, width, extras=()):
    """Build and render one scene; returns ``(rgb_uint8, objects)`` with objects as ``{label, polygon}``."""
    scene = Scene(rng, height, width)
    street = Street(rng, height, width)
    _add_background(scene, street)
    _add_ground(scene, street)
    for side in (0, 1):
        _add_facades(scene, street, side)
    movers = _street_furniture(scene, street) + _road_users(scene, street, extras) + _pedestrians(scene, street)
    for _, add in sorted(movers, key=lambda m: m[0]):
        add()
    if rng.random() < 0.4:
        _add_ego_vehicle(scene, street)
    image = scene.render()
    image = _finish(scene, street, image)
    objects = [{"label": label, "polygon": polygon} for label, polygon, _ in scene.objects]
    return image, objects


def _add_background(scene, street):
    rng, w = scene.rng, scene.width
    sky = SKY_COLORS[rng.integers(len(SKY_COLORS))]
    scene.add("sky", [(0, 0), (w, 0), (w, street.y_h + 2), (0, street.y_h + 2)],
              banded(_jitter(rng, sky) * 0.85, _jitter(rng, sky, 10) * 1.1, fine=0.01, coarse=0.06))
    x = street.x(street.walk[0], 0.05) - w * 0.05
    x_end = street.x(street.walk[1], 0.05) + w * 0.05
    while x < x_end:
        width = w * rng.uniform(0.02, 0.07)
        height = scene.height * rng.uniform(0.02, 0.09)
        label = "vegetation" if rng.random() < 0.35 else "building"
        color = (70, 100, 50) if label == "vegetation" else BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))]
        scene.add(label, [(x, street.y_h + 1), (x, street.y_h - height), (x + width, street.y_h - height),
                          (x + width, street.y_h + 1)], flat(_jitter(rng, color) * 0.8, 0.1, 0.1, 0.05))
        x += width


def _add_ground(scene, street):
    rng, w, h = scene.rng, scene.width, scene.height
    scene.add("terrain", [(0, street.y_h), (w, street.y_h), (w, h), (0, h)],
              flat(_jitter(rng, (110, 130, 70), 20), 0.15, 0.1, 0.05))
    asphalt = _jitter(rng, (85, 85, 88), 15)
    road = [(street.x(street.road[0], 0), street.y_h), (street.x(street.road[1], 0), street.y_h),
            (street.road[1], h), (street.road[0], h)]
    scene.add("road", road, _road_painter(street, asphalt))
    tile = _jitter(rng, (150, 140, 135), 20)
    for side in (0, 1):
        outer, inner = street.walk[side], street.road[side]
        polygon = [(street.x(outer, 0), street.y_h), (street.x(inner, 0), street.y_h), (inner, h), (outer, h)]
        scene.add("sidewalk", polygon, _tiles(tile, street))
        if rng.random() < 0.5:
            t0, t1 = rng.uniform(0.05, 0.3), rng.uniform(0.5, 1.3)
            edge = outer + (inner - outer) * rng.uniform(0.2, 0.4)
            strip = [(street.x(outer, t0), street.y(t0)), (street.x(edge, t0), street.y(t0)),
                     (street.x(edge, t1), street.y(t1)), (street.x(outer, t1), street.y(t1))]
            scene.add("terrain", strip, flat(_jitter(rng, (105, 140, 60), 25), 0.1, 0.15, 0.08))


def _road_painter(street, asphalt):
    def paint(region):
        t = np.clip((region.ys - street.y_h) / (street.h - street.y_h), 1e-3, None)
        color = asphalt * region.texture(0.06, 0.05, 0.07)[:, :, None]
        centre = street.x_v + (street.road[0] + street.road[1] - 2 * street.x_v) / 2 * t
        half = np.maximum(0.5, 0.006 * street.w * t)
        dashes = np.floor(np.log(t) * 6) % 2 == 0
        lines = (np.abs(region.xs - centre) <= half) & dashes
        for edge in street.road:
            edge_x = street.x_v + (edge - street.x_v) * t
            lines |= np.abs(region.xs - edge_x - np.sign(street.x_v - edge) * 3 * half) <= half
        region.set(np.where(lines[:, :, None], np.float32(215), color))
    return paint


def _tiles(color, street):
    color = np.asarray(color, np.float32)

    def paint(region):
        phase = np.log(np.clip((region.ys - street.y_h) / (street.h - street.y_h), 1e-3, None)) * 10
        grout = ((np.floor(phase) % 2 == 0) & (phase % 1 < 0.2))[:, :, None]
        region.set(np.where(grout, color * 0.75, color) * region.texture(coarse=0.05, fine=0.06)[:, :, None])
    return paint


def _add_facades(scene, street, side):
    """Buildings along the sidewalk's outer line, with walls, fences and gaps filled by hedges."""
    rng = scene.rng
    outer = street.walk[side]
    t = 1.6
    while t > 0.04:
        t_next = max(0.04, t * rng.uniform(0.45, 0.8))
        kind = rng.random()
        if kind < 0.8:
            height = rng.uniform(0.8, 2.2)
            color = _jitter(rng, BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))], 15)
            glass = _jitter(rng, (60, 70, 85), 15)
            painter = windows(color, glass, int(rng.integers(3, 8)), int(rng.integers(2, 6)))
            label = "building"
        else:
            height = rng.uniform(0.15, 0.35)
            painter = flat(_jitter(rng, (60, 105, 45), 20), 0.1, 0.2, 0.15)
            label = "vegetation"
        scene.add(label, _facade(street, outer, t, t_next, height, height), painter)
        if rng.random() < 0.25:
            low = rng.uniform(0.06, 0.14)
            if rng.random() < 0.5:
                scene.add("wall", _facade(street, outer, t, t_next, low, low),
                          flat(_jitter(rng, (160, 155, 145), 15), 0.12, 0.06, 0.04))
            else:
                scene.add("fence", _facade(street, outer, t, t_next, low, low),
                          striped(_jitter(rng, (120, 110, 95), 15), (70, 65, 60), max(1, int(scene.width / 180))))
        t = t_next


def _facade(street, x_bottom, t0, t1, h0, h1):
    x0, x1 = street.x(x_bottom, t0), street.x(x_bottom, t1)
    y0, y1 = street.y(t0), street.y(t1)
    span = street.h - street.y_h
    return [(x0, y0), (x0, y0 - h0 * t0 * span * 1.6), (x1, y1 - h1 * t1 * span * 1.6), (x1, y1)]


def _street_furniture(scene, street):
    """Poles (some with a sign or a traffic light) and trees on the sidewalks, returned as depth-sorted adders."""
    rng, adders = scene.rng, []
    for side in (0, 1):
        for _ in range(int(rng.integers(2, 5))):
            t = rng.uniform(0.12, 0.95)
            frac = rng.uniform(0.6, 0.9)
            x = street.x(street.walk[side] + (street.road[side] - street.walk[side]) * frac, t)
            kind = rng.random()
            if kind < 0.45:
                adders.append((t, _tree_adder(scene, street, x, t)))
            else:
                adders.append((t, _pole_adder(scene, street, x, t, "sign" if kind < 0.7 else "light")))
    return adders


def _tree_adder(scene, street, x, t):
    rng = scene.rng
    span = street.h - street.y_h

    def add():
        y = street.y(t)
        trunk_w = max(1.0, 0.012 * street.w * t)
        trunk_h = 0.5 * t * span
        scene.add("vegetation", [(x - trunk_w, y), (x - trunk_w, y - trunk_h), (x + trunk_w, y - trunk_h),
                                 (x + trunk_w, y)], flat(_jitter(rng, (80, 60, 40), 10), 0.0, 0.1, 0.1))
        radius = rng.uniform(0.25, 0.4) * t * span
        angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        radii = radius * rng.uniform(0.75, 1.15, len(angles))
        cy = y - trunk_h - radius * 0.6
        crown = [(x + r * np.cos(a), cy + r * np.sin(a) * 0.9) for a, r in zip(angles, radii)]
        scene.add("vegetation", crown, flat(_jitter(rng, (55, 95, 40), 25), 0.15, 0.25, 0.2))
    return add


def _pole_adder(scene, street, x, t, kind):
    rng = scene.rng
    span = street.h - street.y_h

    def add():
        y = street.y(t)
        half = max(0.6, 0.004 * street.w * t)
        top = y - rng.uniform(0.7, 1.1) * t * span
        scene.add("pole", [(x - half, y), (x - half, top), (x + half, top), (x + half, y)],
                  flat(_jitter(rng, (120, 120, 125), 20), 0.0, 0.05, 0.05))
        size = max(2.0, 0.08 * t * span)
        if kind == "sign":
            shape = rng.integers(3)
            if shape == 0:
                points = [(x, top - size), (x + size * 0.9, top + size * 0.6), (x - size * 0.9, top + size * 0.6)]
            else:
                n = 8 if shape == 1 else 4
                angles = np.linspace(0, 2 * np.pi, n, endpoint=False) + (np.pi / 4 if n == 4 else np.pi / 8)
                points = [(x + size * np.cos(a), top + size * np.sin(a)) for a in angles]
            color = [(200, 30, 30), (30, 70, 170), (230, 200, 40), (235, 235, 235)][rng.integers(4)]
            scene.add("traffic sign", points, flat(_jitter(rng, color, 15), 0.0, 0.05, 0.05))
        else:
            box = [(x - size * 0.45, top - size * 1.6), (x + size * 0.45, top - size * 1.6),
                   (x + size * 0.45, top + size * 0.2), (x - size * 0.45, top + size * 0.2)]
            lamp = [(220, 40, 30), (230, 170, 30), (40, 200, 80)][rng.integers(3)]
            scene.add("traffic light", box, banded(_jitter(rng, (35, 35, 35), 8), lamp, fine=0.05))
    return add


def _road_users(scene, street, extras):
    """Cars (always), and by chance or schedule trucks, buses, trams, cyclists and motorcyclists."""
    rng, adders = scene.rng, []
    kinds = ["car"] * int(rng.integers(2, 6))
    kinds += [k for k, p in (("truck", 0.35), ("bus", 0.3), ("bicycle", 0.35), ("motorcycle", 0.25))
              if rng.random() < p]
    kinds += list(extras)
    for kind in kinds:
        t = rng.uniform(0.15, 0.95)
        lane = 0.5 if kind == "train" else rng.choice([0.22, 0.42, 0.62, 0.8]) + rng.normal(0, 0.03)
        if kind in ("bicycle", "motorcycle"):
            lane = rng.choice([0.1, 0.9])
        adders.append((t, _vehicle_adder(scene, street, kind, lane, t)))
    return adders


CAR_SHAPE = [(-0.5, 0.1), (-0.5, 0.55), (-0.4, 0.62), (-0.32, 1.0), (0.32, 1.0), (0.4, 0.62), (0.5, 0.55),
             (0.5, 0.1), (0.4, 0.0), (0.26, 0.0), (0.24, 0.08), (-0.24, 0.08), (-0.26, 0.0), (-0.4, 0.0)]
BOX_SHAPE = [(-0.5, 0.06), (-0.5, 1.0), (0.5, 1.0), (0.5, 0.06), (0.35, 0.0), (-0.35, 0.0)]
VEHICLES = {  # width as a fraction of the road's width, height as a fraction of the vehicle's width
    "car": (0.22, 0.6, CAR_SHAPE), "truck": (0.26, 1.0, BOX_SHAPE), "bus": (0.28, 0.95, BOX_SHAPE),
    "train": (0.3, 1.05, BOX_SHAPE),
}


def _vehicle_adder(scene, street, kind, lane, t):
    rng = scene.rng
    span = street.h - street.y_h

    def add():
        x, road_width = street.road_x(lane, t)
        y = street.y(t)
        if kind in ("bicycle", "motorcycle"):
            _add_two_wheeler(scene, kind, x, y, t * span)
            return
        width_frac, aspect, shape = VEHICLES[kind]
        width = width_frac * road_width
        height = aspect * width
        points = [(x + u * width, y - v * height) for u, v in shape]
        if kind == "car":
            body = _jitter(rng, VEHICLE_COLORS[rng.integers(len(VEHICLE_COLORS))], 12)
            painter = _vehicle_painter(body, glass_from=0.62, glass_to=0.92)
        elif kind == "train":
            painter = windows(_jitter(rng, (200, 60, 50), 15), (50, 60, 70), 2, 4)
        else:
            body = _jitter(rng, [(230, 200, 40), (200, 40, 35), (235, 235, 235), (40, 80, 150)][rng.integers(4)])
            painter = _vehicle_painter(body, glass_from=0.55, glass_to=0.85)
        scene.add(kind, points, painter)
    return add


def _vehicle_painter(body, glass_from, glass_to):
    body = np.asarray(body, np.float32)

    def paint(region):
        y0, y1, x0, x1 = region.extent()
        v = (y1 - region.ys) / max(1.0, y1 - y0)
        u = (region.xs - x0) / max(1.0, x1 - x0)
        color = np.broadcast_to(body, region.mask.shape + (3,))
        glass = (v > glass_from) & (v < glass_to) & (u > 0.12) & (u < 0.88)
        lights = (v > 0.35) & (v < 0.48) & ((u < 0.12) | (u > 0.88))
        color = np.where(glass[:, :, None], np.float32([45, 55, 65]), color)
        color = np.where(np.broadcast_to(v < 0.12, glass.shape)[:, :, None], np.float32(20), color)
        color = np.where(lights[:, :, None], np.float32([210, 40, 30]), color)
        region.set(color * region.texture(medium=0.04, fine=0.04)[:, :, None])
    return paint


def _add_two_wheeler(scene, kind, x, y, scale):
    rng = scene.rng
    wheel = 0.06 * scale
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    color = (25, 25, 30) if kind == "bicycle" else _jitter(rng, (60, 60, 140), 20)
    for dx in (-1.1, 1.1):
        cx = x + dx * wheel
        scene.add(kind, [(cx + wheel * np.cos(a), y - wheel + wheel * np.sin(a)) for a in angles],
                  flat((30, 30, 30), 0, 0.05, 0.1))
    frame_top = y - wheel * (2.2 if kind == "bicycle" else 2.6)
    scene.add(kind, [(x - 1.1 * wheel, y - wheel), (x - 0.6 * wheel, frame_top), (x + 0.8 * wheel, frame_top),
                     (x + 1.1 * wheel, y - wheel)], flat(color, 0, 0.05, 0.08))
    _add_person(scene, "rider", x, frame_top + 0.3 * wheel, 0.55 * scale)


def _pedestrians(scene, street):
    rng, adders = scene.rng, []
    span = street.h - street.y_h
    for _ in range(int(rng.integers(1, 6))):
        side = rng.integers(2)
        t = rng.uniform(0.15, 1.0)
        frac = rng.uniform(0.15, 0.85)
        x = street.x(street.walk[side] + (street.road[side] - street.walk[side]) * frac, t)

        def add(x=x, t=t):
            _add_person(scene, "person", x, street.y(t), 0.5 * t * span)
        adders.append((t, add))
    return adders


def _add_person(scene, label, x, y, height):
    """A head and a body (torso and legs) polygon, shirt and trousers of random colours."""
    rng = scene.rng
    head = 0.09 * height
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    cy = y - height + head
    shoulders, hips = 0.16 * height, 0.11 * height
    body = [(x - shoulders, y - height + 2 * head), (x + shoulders, y - height + 2 * head),
            (x + hips, y - 0.45 * height), (x + hips * 0.9, y), (x + hips * 0.15, y), (x, y - 0.35 * height),
            (x - hips * 0.15, y), (x - hips * 0.9, y), (x - hips, y - 0.45 * height)]
    shirt = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))], 15)
    trousers = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))], 15)
    scene.add(label, body, banded(shirt, trousers, fine=0.06))
    scene.add(label, [(x + head * np.cos(a), cy + head * np.sin(a)) for a in angles],
              flat(_jitter(rng, (200, 160, 130), 25), 0, 0.05, 0.05))


def _add_ego_vehicle(scene, street):
    w, h = scene.width, scene.height
    lift = h * scene.rng.uniform(0.04, 0.08)
    xs = np.linspace(0, w, 9)
    curve = [(x, h - lift * (1 - ((x - w / 2) / (w / 2)) ** 2 * 0.6)) for x in xs]
    scene.add("ego vehicle", curve + [(w, h), (0, h)], flat((30, 30, 35), 0, 0.03, 0.03))


def _finish(scene, street, image):
    """Cast shadows, illumination, colour cast, vignetting and sensor noise (image only, labels unchanged)."""
    rng, h, w = scene.rng, scene.height, scene.width
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    light = 1.0 - 0.15 * (xx ** 2 + yy ** 2)
    for _ in range(int(rng.integers(0, 3))):
        t0, t1 = sorted(rng.uniform(0.05, 1.0, 2))
        x0 = rng.uniform(-0.2, 0.6) * w
        shadow = [(x0, street.y(t0)), (x0 + rng.uniform(0.3, 0.8) * w, street.y(t0)),
                  (x0 + rng.uniform(0.3, 0.9) * w, street.y(t1)), (x0 - 0.1 * w, street.y(t1))]
        mask = polygon_mask([[int(round(a)), int(round(b))] for a, b in shadow], h, w)
        light = np.where(mask, light * np.float32(rng.uniform(0.55, 0.8)), light)
    gain = (rng.uniform(0.7, 1.25) * rng.uniform(0.9, 1.1, 3)).astype(np.float32)
    image *= light[:, :, None] * gain
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 7))
    return np.clip(image, 0, 255).astype(np.uint8)


def rare_classes(split_index, index):
    """Which rare objects an image must contain, so that every class occurs in every split of 6+ images."""
    extras = []
    if index % 6 == split_index % 6:
        extras.append("train")
    if index % 3 == 1:
        extras.append("motorcycle")
    if index % 3 == 2:
        extras.append("bicycle")
    if index % 4 == 0:
        extras.append("truck")
    if index % 4 == 2:
        extras.append("bus")
    return extras


def demo_file_stem(city, index):
    return f"{city}_{index:06d}_{FRAME:06d}"


def generate_demo_dataset(root, seed=0, counts=None, size=DEFAULT_SIZE, progress=False):
    """Write the demo dataset under ``root``; returns ``{split: [image paths]}`` and the time taken.

    Image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split_index, i])`` only, so the
    output is identical on every run and every machine, and independent of the other counts.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    height, width = size
    if height < 32 or width < 32:
        raise ValueError(f"demo image size {height}x{width} is too small; use at least 32x32 (e.g. 64x128).")
    start = time.perf_counter()
    written = {}
    for split_index, split in enumerate(("train", "val", "test")):
        cities = DEMO_CITIES[split]
        written[split] = []
        for index in range(int(counts.get(split, 0))):
            city = cities[index % len(cities)]
            rng = np.random.default_rng([seed, split_index, index])
            image, objects = make_scene(rng, height, width, extras=rare_classes(split_index, index))
            stem = demo_file_stem(city, index)
            image_path = os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png")
            json_path = os.path.join(root, "gtFine", split, city, stem + "_gtFine_polygons.json")
            write_png(image_path, image)
            write_json(json_path, {"imgHeight": height, "imgWidth": width, "objects": objects})
            written[split].append(image_path)
            if progress:
                print(f"\r{split}: {index + 1}/{counts[split]}", end="", flush=True)
        if progress and counts.get(split):
            print()
    return written, time.perf_counter() - start
