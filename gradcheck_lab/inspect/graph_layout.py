"""``gradcheck-lab graph``, where each thing is drawn: the layout of a case's graph in inches,
pure geometry (no matplotlib: text is measured by an ``Extent`` callable that the caller passes
in).

The layout is layered (Sugiyama): columns by depth from the inputs, an edge that skips columns
gets a waypoint in each column it passes (a "dummy" item with a slot of its own between the
boxes), and the order within each column reduces crossings. The columns are wrapped into bands
of at most ``COLUMNS_PER_BAND`` columns and 1,600 px, so that a deep graph (a layernorm MLP, a
transformer block) stays readable. Every edge is then routed through free space by
construction, never through a box or a label: a horizontal stub through its own box's slot to
the column's edge, a straight run across the empty channel between two columns, and, from one
band to the next, down the right margin, left along the gap under the band and into the next
band from its left. On a scalar graph each edge's ∂ label goes to a free spot on the edge.

Units are inches (1 in = 100 px at matplotlib's 100 dpi), y upwards from the top edge."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.inspect.graph import CaseGraph, GraphNode

# At most five columns to a band (fewer where their labels are wide): 1,600 px in all.
COLUMNS_PER_BAND = 5
FONT, SMALL = 8, 7  # points: a box's text; its gradient and an edge's ∂ (measured and drawn)
_MAX_INCHES = 16.0  # 1,600 px: the width the drawing must read at
_PAD = (0.08, 0.05)  # inches around a box's text, across and up
_GRAD_DROP = 0.03  # from a box's bottom to the top of its gradient line
_ROW_GAP, _DUMMY_GAP = 0.22, 0.1  # between two boxes in a column; next to a waypoint
_CHANNEL = 0.6  # between two columns (wider where edge labels must fit in it)
_STUB_OUT, _STUB_IN = 0.06, 0.16  # edge stubs out of a column and into one (the arrowhead)
_LANE = 0.09  # between parallel edges in a margin or a band gap
_MARGIN = 0.15  # outside the outermost lane
_BAND_GAP = 0.4  # the least space between two bands
_PORT = 0.09  # between the edges that enter (or leave) one side of a box

Point = tuple[float, float]
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1
# A text's width and height in inches at a font size in points, as the painter will draw it.
Extent = Callable[[str, int], tuple[float, float]]


@dataclass(frozen=True)
class DrawnEdge:
    arg: int
    node: int
    number: int  # the argument's position among the node's drawn arguments
    points: tuple[Point, ...]  # the polyline, from the argument's box to the node's
    label: str | None  # "∂ = 3" on a scalar graph
    label_at: Point | None  # its centre, on the polyline


@dataclass(frozen=True)
class Drawing:
    """What is drawn, where: the geometry that the routing guarantees and the tests check."""
    width: float
    height: float  # of the graph, below the title and legend
    boxes: dict[int, Rect]
    gradients: dict[int, Rect]  # the gradient line under each box
    edges: tuple[DrawnEdge, ...]
    bands: tuple[tuple[float, float], ...]  # (bottom, top) of each band's boxes
    content: tuple[float, float]  # left and right of the columns: the margins lie outside


@dataclass(frozen=True)
class _Layers:
    column: dict[int, int]  # item -> column; an item is a node index, or < 0 for a waypoint
    order: list[list[int]]  # each column's items, top to bottom
    links: list[tuple[int, int, int]]  # (item, item in the next column, chain)
    chains: list[tuple[int, int, int, list[int]]]  # (arg, node, number, items from arg to node)
    preds: dict[int, list[int]]
    succs: dict[int, list[int]]


def _layered(nodes: tuple[GraphNode, ...], column: dict[int, int]) -> _Layers:
    """Items in their columns, a waypoint in every column an edge skips, and an order within
    each column that reduces crossings."""
    column = dict(column)
    links: list[tuple[int, int, int]] = []
    chains: list[tuple[int, int, int, list[int]]] = []
    for node in nodes:
        for number, arg in enumerate(node.args):
            items = [arg]
            for between in range(column[arg] + 1, column[node.index]):
                dummy = -1 - len(column) + len(nodes)  # -1, -2, ...: never a node's index
                column[dummy] = between
                items.append(dummy)
            items.append(node.index)
            links += [(u, v, len(chains)) for u, v in itertools.pairwise(items)]
            chains.append((arg, node.index, number, items))
    kind = {node.index: node.kind for node in nodes}
    order: list[list[int]] = [[] for _ in range(max(column.values(), default=0) + 1)]
    for item in sorted(column, key=lambda i: (i < 0, abs(i))):  # nodes, then waypoints
        order[column[item]].append(item)
    for c, here in enumerate(order):
        # To start, a column's inputs on either side of what it computes and of the edges
        # passing through, so that a result sits level with its main argument rather than
        # climbing past its weights.
        inputs = [i for i in here if kind.get(i) == "input"]
        others = [i for i in here if kind.get(i) != "input"]
        order[c] = [*inputs[0::2], *others, *inputs[1::2]] if others else inputs
    preds: dict[int, list[int]] = {item: [] for item in column}
    succs: dict[int, list[int]] = {item: [] for item in column}
    for u, v, _ in links:
        succs[u].append(v)
        preds[v].append(u)
    layers = _Layers(column, order, links, chains, preds, succs)
    _reduce_crossings(layers)
    return layers


def _crossings(layers: _Layers) -> int:
    rank = {item: r for items in layers.order for r, item in enumerate(items)}
    between: dict[int, list[tuple[int, int]]] = {}
    for u, v, _ in layers.links:
        between.setdefault(layers.column[u], []).append((rank[u], rank[v]))
    return sum((a[0] - b[0]) * (a[1] - b[1]) < 0
               for pairs in between.values()
               for i, a in enumerate(pairs) for b in pairs[i + 1:])


def _barycentre(near: dict[int, list[int]], beside: dict[int, int], own: dict[int, int]
                ) -> Callable[[int], tuple[float, int]]:
    """The sort key of an item: the mean rank in ``beside`` of its neighbours there (its own
    rank where it has none), then its own rank."""
    return lambda item: (
        float(np.mean([beside[n] for n in near[item]])) if near[item] else own[item], own[item])


def _reduce_crossings(layers: _Layers, sweeps: int = 8) -> None:
    """Barycentre ordering: each column sorted by the mean rank of its items' neighbours in
    the column before (a sweep right) or after (a sweep left); the best order found is kept.
    An item with no neighbour on that side keeps its rank."""
    best, fewest = [list(items) for items in layers.order], _crossings(layers)
    for sweep in range(sweeps):
        right = sweep % 2 == 0
        columns = range(1, len(layers.order)) if right else range(len(layers.order) - 2, -1, -1)
        for c in columns:
            beside = {item: r for r, item in enumerate(layers.order[c - 1 if right else c + 1])}
            own = {item: r for r, item in enumerate(layers.order[c])}
            near = layers.preds if right else layers.succs
            layers.order[c].sort(key=_barycentre(near, beside, own))
        count = _crossings(layers)
        if count < fewest:
            best, fewest = [list(items) for items in layers.order], count
    layers.order[:] = best


def layout(nodes: tuple[GraphNode, ...]) -> dict[int, tuple[float, float]]:
    """Each node's column (its depth) and its row in that column after crossing reduction:
    0 at the top, -1 under it (waypoints of long edges count as rows)."""
    layers = _layered(nodes, {node.index: node.depth for node in nodes})
    return {item: (float(c), -float(r)) for c, items in enumerate(layers.order)
            for r, item in enumerate(items) if item >= 0}


def banded(nodes: tuple[GraphNode, ...], widths: dict[int, float], channel: float,
           room: float = _MAX_INCHES, per_band: int = COLUMNS_PER_BAND,
           ) -> tuple[dict[int, int], list[list[int]]]:
    """Each node's column and the columns of each band, top to bottom: columns by depth
    (``channel`` apart, each as wide as its widest node), at most ``per_band`` to a band and
    no wider than ``room`` unless one column is. Where a band breaks, the inputs that feed only
    the next column move to a column of their own at the start of the next band, beside what
    they feed, rather than wrap round to it."""
    users: dict[int, set[int]] = {node.index: set() for node in nodes}
    for node in nodes:
        for arg in node.args:
            users[arg].add(node.index)
    columns: list[list[GraphNode]] = [[] for _ in range(max(n.depth for n in nodes) + 1)]
    for node in nodes:
        columns[node.depth].append(node)

    def width(column: list[GraphNode]) -> float:
        return max((widths[node.index] for node in column), default=0.3)

    bands: list[list[int]] = [[]]
    used, c = 0.0, 0
    while c < len(columns):
        need = used + channel + width(columns[c]) if bands[-1] else width(columns[c])
        if bands[-1] and (len(bands[-1]) == per_band or need > room):
            after = {node.index for node in columns[c]}
            feeders = [node for node in columns[c - 1] if node.kind == "input"
                       and users[node.index] and users[node.index] <= after]
            if feeders and len(feeders) < len(columns[c - 1]):
                columns[c - 1] = [node for node in columns[c - 1] if node not in feeders]
                columns.insert(c, feeders)
            bands.append([])
            need = width(columns[c])
        bands[-1].append(c)
        used, c = need, c + 1
    return {node.index: c for c, column in enumerate(columns) for node in column}, bands


def _project(desired: list[float], separations: list[float]) -> list[float]:
    """The heights nearest ``desired`` (least squares) that keep the column's order and its
    separations (y[i] - y[i + 1] >= separations[i]): with the separations taken out, a
    non-increasing fit, which pool-adjacent-violators finds exactly."""
    offsets = [0.0]
    for separation in separations:
        offsets.append(offsets[-1] + separation)
    blocks: list[list[float]] = []  # [sum, count] of pooled targets
    for target in (d + o for d, o in zip(desired, offsets, strict=True)):
        blocks.append([target, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted = [total / count for total, count in blocks for _ in range(int(count))]
    return [z - o for z, o in zip(fitted, offsets, strict=True)]


def _rows(layers: _Layers, above: dict[int, float], below: dict[int, float],
          sweeps: int = 12) -> dict[int, float]:
    """Each item's height: every item as near the mean height of its neighbours as the
    column's order and spacing allow, by alternate sweeps right and left (a long edge's
    waypoints thus run straight)."""
    def separations(items: list[int]) -> list[float]:
        return [below[a] + above[b] + (_ROW_GAP if a >= 0 and b >= 0 else _DUMMY_GAP)
                for a, b in itertools.pairwise(items)]

    height: dict[int, float] = {}
    for items in layers.order:
        height.update(zip(items, _project([0.0] * len(items), separations(items)), strict=True))
    for sweep in range(sweeps):
        right = sweep % 2 == 0
        near = layers.preds if right else layers.succs
        for items in layers.order if right else reversed(layers.order):
            desired = [float(np.mean([height[n] for n in near[item]])) if near[item]
                       else height[item] for item in items]
            height.update(zip(items, _project(desired, separations(items)), strict=True))
    return height


@dataclass(frozen=True)
class _Sizes:
    box: dict[int, tuple[float, float]]  # width, height of each node's box
    gradient: dict[int, tuple[float, float]]  # of its gradient line
    label: dict[tuple[int, int], tuple[float, float]]  # of each ∂ label, by (node, number)


def _measure(graph: CaseGraph, extent: Extent) -> _Sizes:
    box, gradient, label = {}, {}, {}
    for node in graph.nodes:
        width, height = extent("\n".join(node.lines[:2]), FONT)
        box[node.index] = (width + 2 * _PAD[0], height + 2 * _PAD[1])
        gradient[node.index] = extent(node.lines[2], SMALL)
        for number, local in enumerate(node.local):
            if local is not None:
                width, height = extent(f"∂ = {local}", SMALL)
                label[node.index, number] = (width + 0.06, height + 0.04)  # its white pad
    return _Sizes(box, gradient, label)


@dataclass(frozen=True)
class _Frame:
    """Where the columns and bands went."""
    x0: list[float]  # each column's left and right
    x1: list[float]
    band_of: list[int]  # each column's band
    y: dict[int, float]  # each item's height, in the drawing
    bands: list[tuple[float, float]]  # (bottom, top) of each band
    wraps: list[list[int]]  # the links from each band into the next
    lanes: int  # the most edges any one wrap carries
    width: float
    height: float


def _wrapping(layers: _Layers, band_of: list[int]) -> list[list[int]]:
    wraps: list[list[int]] = [[] for _ in range(max(band_of) + 1)]
    for number, (u, v, _) in enumerate(layers.links):
        if band_of[layers.column[u]] != band_of[layers.column[v]]:
            wraps[band_of[layers.column[u]]].append(number)
    return wraps


def _frame(layers: _Layers, sizes: _Sizes, channel: float, bands: list[list[int]]) -> _Frame:
    """The columns placed band by band, and the bands stacked with a gap under each that
    holds the lanes of the edges wrapping into the next (their margins, left and right)."""
    above = {i: sizes.box[i][1] / 2 if i >= 0 else 0.0 for i in layers.column}
    below = {i: sizes.box[i][1] / 2 + _GRAD_DROP + sizes.gradient[i][1] if i >= 0 else 0.0
             for i in layers.column}
    local = _rows(layers, above, below)
    widths = [max((max(sizes.box[i][0], sizes.gradient[i][0]) for i in items if i >= 0),
                  default=0.3) for items in layers.order]
    band_of = [b for b, columns in enumerate(bands) for _ in columns]
    wraps = _wrapping(layers, band_of)
    lanes = max(map(len, wraps))
    left = _MARGIN + _LANE * lanes + _STUB_IN
    x0, x1 = [0.0] * len(widths), [0.0] * len(widths)
    for columns in bands:
        x = left
        for c in columns:
            x0[c], x1[c] = x, x + widths[c]
            x = x1[c] + channel
    top, extents, shift = -_MARGIN, [], {}
    for b, columns in enumerate(bands):
        items = [i for c in columns for i in layers.order[c]]
        high = max(local[i] + above[i] for i in items)
        low = min(local[i] - below[i] for i in items)
        shift[b] = top - high
        extents.append((low + shift[b], top))
        top = low + shift[b] - max(_BAND_GAP, 2 * _LANE + _LANE * len(wraps[b]))
    y = {i: local[i] + shift[band_of[layers.column[i]]] for i in layers.column}
    return _Frame(x0, x1, band_of, y, extents, wraps, lanes,
                  max(x1) + _STUB_OUT + _LANE * lanes + _MARGIN, _MARGIN - extents[-1][0])


def _ports(layers: _Layers, frame: _Frame, sizes: _Sizes) -> tuple[list[float], list[float]]:
    """The height at which each link leaves its item and enters the next: a waypoint's own
    height; on a box's side, the links spread over its middle, in the order of their other
    ends, so that they do not cross at the box."""
    out = [frame.y[u] for u, _, _ in layers.links]
    into = [frame.y[v] for _, v, _ in layers.links]

    def spread(item: int, numbers: list[int], heights: list[float]) -> None:
        step = min(_PORT, sizes.box[item][1] / (len(numbers) + 1))
        for j, number in enumerate(numbers):
            heights[number] = frame.y[item] + step * ((len(numbers) - 1) / 2 - j)

    leaving: dict[int, list[int]] = {}
    entering: dict[int, list[int]] = {}
    for number, (u, v, _) in enumerate(layers.links):
        leaving.setdefault(u, []).append(number)
        entering.setdefault(v, []).append(number)
    for item, numbers in leaving.items():
        if item >= 0:
            spread(item, sorted(numbers, key=lambda n: (-frame.y[layers.links[n][1]], n)), out)
    for item, numbers in entering.items():
        if item >= 0:
            spread(item, sorted(numbers, key=lambda n: (-out[n], n)), into)
    return out, into


def _link_route(layers: _Layers, frame: _Frame, sizes: _Sizes, ports: tuple[list[float],
                list[float]], number: int) -> list[Point]:
    """One link's polyline, from where it leaves its item to where it enters the next."""
    u, v, _ = layers.links[number]
    cu, cv = layers.column[u], layers.column[v]
    out, into = ports[0][number], ports[1][number]
    # A box's side, or a waypoint's passage through its column (its slot is free).
    start = (frame.x0[cu] + (frame.x1[cu] - frame.x0[cu] + sizes.box[u][0]) / 2 if u >= 0
             else frame.x1[cu] + _STUB_OUT, out)
    end = (frame.x0[cv] + (frame.x1[cv] - frame.x0[cv] - sizes.box[v][0]) / 2 if v >= 0
           else frame.x0[cv] - _STUB_IN, into)
    band = frame.band_of[cu]
    if band == frame.band_of[cv]:  # across the empty channel between the two columns
        return [start, (frame.x1[cu] + _STUB_OUT, out), (frame.x0[cv] - _STUB_IN, into), end]
    # Into the next band: nested lanes, the topmost link outermost on the right, lowest in
    # the gap and innermost on the left, so that links in order do not cross one another.
    wrap = sorted(frame.wraps[band], key=lambda n: (-ports[0][n], -ports[1][n], n))
    rank, count = wrap.index(number), len(wrap)
    right = max(frame.x1) + _STUB_OUT + _LANE * (count - rank)
    gap = frame.bands[band][0] - frame.bands[band + 1][1]
    lane = frame.bands[band][0] - (gap - _LANE * (count - 1)) / 2 - _LANE * (count - 1 - rank)
    left = min(frame.x0) - _STUB_IN - _LANE * (rank + 1)
    return [start, (right, out), (right, lane), (left, lane), (left, into), end]


def _simplified(points: list[Point]) -> tuple[Point, ...]:
    """Without repeated points and the middle points of straight runs."""
    kept: list[Point] = []
    for point in points:
        if kept and math.dist(kept[-1], point) < 1e-9:
            continue
        if len(kept) >= 2:
            (ax, ay), (bx, by) = kept[-2], kept[-1]
            if abs((bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)) < 1e-9 and (
                    (bx - ax) * (point[0] - bx) + (by - ay) * (point[1] - by) >= 0):
                kept[-1] = point
                continue
        kept.append(point)
    return tuple(kept)


def _segment_hits(a: Point, b: Point, rect: Rect) -> bool:
    """Whether the segment ab meets the rectangle's interior (Liang-Barsky clipping)."""
    low, high = 0.0, 1.0
    for delta, lower, upper, start in ((b[0] - a[0], rect[0], rect[2], a[0]),
                                       (b[1] - a[1], rect[1], rect[3], a[1])):
        if abs(delta) < 1e-12:
            if not lower < start < upper:
                return False
            continue
        t0, t1 = sorted(((lower - start) / delta, (upper - start) / delta))
        low, high = max(low, t0), min(high, t1)
    return high - low > 1e-9


def _label_spot(points: tuple[Point, ...], size: tuple[float, float], taken: list[Rect],
                others: list[tuple[Point, Point]]) -> Point:
    """A point of the edge's own polyline where its label overlaps no box, gradient, other
    label or other edge: the middle of its longest segments first; else the least crowded."""
    segments = sorted(itertools.pairwise(points), key=lambda s: -math.dist(*s))
    best, fewest = points[len(points) // 2], math.inf
    for (ax, ay), (bx, by) in segments:
        for t in (0.5, 0.35, 0.65, 0.2, 0.8):
            x, y = ax + t * (bx - ax), ay + t * (by - ay)
            rect = (x - size[0] / 2, y - size[1] / 2, x + size[0] / 2, y + size[1] / 2)
            clashes = sum(_overlap(rect, other) for other in taken) + sum(
                _segment_hits(a, b, rect) for a, b in others)
            if clashes == 0:
                return (x, y)
            if clashes < fewest:
                best, fewest = (x, y), clashes
    return best


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _placed(graph: CaseGraph, sizes: _Sizes) -> Drawing:
    """The layout and the routes of every edge, with its label placed on a free spot."""
    channel = max([_CHANNEL, *(w + 0.3 for w, _ in sizes.label.values())])
    widths = {node.index: max(sizes.box[node.index][0], sizes.gradient[node.index][0])
              for node in graph.nodes}
    lanes = 0
    for _ in range(4):  # the margins hold the lanes, which depend on where the bands break
        room = _MAX_INCHES - 2 * (_MARGIN + _LANE * lanes) - _STUB_IN - _STUB_OUT
        column, bands = banded(graph.nodes, widths, channel, room)
        starts = [columns[0] for columns in bands[1:]]
        need = max([sum(column[arg] < start <= column[node.index] for node in graph.nodes
                        for arg in node.args) for start in starts], default=0)
        if need <= lanes:
            break
        lanes = need
    layers = _layered(graph.nodes, column)
    frame = _frame(layers, sizes, channel, bands)
    boxes, gradients = {}, {}
    for node in graph.nodes:
        c, (w, h), (gw, gh) = column[node.index], sizes.box[node.index], sizes.gradient[
            node.index]
        x, y = (frame.x0[c] + frame.x1[c]) / 2, frame.y[node.index]
        boxes[node.index] = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        drop = y - h / 2 - _GRAD_DROP
        gradients[node.index] = (x - gw / 2, drop - gh, x + gw / 2, drop)
    ports = _ports(layers, frame, sizes)
    routes: list[list[Point]] = [[] for _ in layers.chains]
    for number, (_, _, chain) in enumerate(layers.links):  # a chain's links are in order
        routes[chain] += _link_route(layers, frame, sizes, ports, number)
    polylines = [_simplified(route) for route in routes]
    taken = [*boxes.values(), *gradients.values()]
    by_index = {node.index: node for node in graph.nodes}
    edges = []
    for number, (arg, index, position, _) in enumerate(layers.chains):
        local = by_index[index].local
        label = local[position] if position < len(local) else None
        at = None
        if label is not None:
            others = [segment for other, points in enumerate(polylines) if other != number
                      for segment in itertools.pairwise(points)]
            size = sizes.label[index, position]
            at = _label_spot(polylines[number], size, taken, others)
            taken.append((at[0] - size[0] / 2, at[1] - size[1] / 2,
                          at[0] + size[0] / 2, at[1] + size[1] / 2))
        edges.append(DrawnEdge(arg, index, position, polylines[number],
                               None if label is None else f"∂ = {label}", at))
    return Drawing(frame.width, frame.height, boxes, gradients, tuple(edges),
                   tuple(frame.bands), (min(frame.x0), max(frame.x1)))


def arrange(graph: CaseGraph, extent: Extent) -> Drawing:
    """Where every box, gradient line, edge and ∂ label goes, its text measured by ``extent``."""
    return _placed(graph, _measure(graph, extent))
