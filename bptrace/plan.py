"""The network plan: the one home of the wiring.

A scenario's `layers:` list is a graph written short: each layer reads the layer before it
(the input, for the first) unless `from:` names what it reads.  The plan is that graph made
explicit, once, at load time: the network's inputs, then every layer as a `Node` with what it
reads, in the order the file wrote them (a topological order, since a layer may only read
names defined above it), which values the backward pass reaches, and, for each value, which
nodes read it.  The engine walks it (forward in order, backward in reverse), and every other
part that needs to know what reads what (the traced names, the shapes, explain, the mistake
catalog, the oracle tests) asks the plan instead of counting list positions.

The backward pass follows micrograd's rule: the delta of a value read by several layers is
the SUM of what each reader sends back, and it is complete once its last reader (the first
one in forward order) has run backward.  A value read once gets its delta from that reader,
exactly as in a chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Value:
    """A value layers can read: the input (or one named input), or a layer's output."""
    name: str            # "input", an input's name, or a layer's name
    out: str             # its traced name: "input", "x", "c1.out"
    delta: str           # the traced name of ∂loss/∂value: "input.delta", "x.delta", "c1.delta"
    layer: bool          # a layer's output (False for an input)


def input_value(name: str) -> Value:
    return Value(name, name, f"{name}.delta", False)


def layer_value(name: str) -> Value:
    return Value(name, f"{name}.out", f"{name}.delta", True)


@dataclass
class Node:
    """One layer in the graph."""
    name: str
    type: str
    reads: tuple                   # the Values it reads, in order
    out_shape: tuple
    param_roles: tuple = ()
    position: int = 0              # its place in `layers:`, for messages

    @property
    def value(self) -> Value:
        return layer_value(self.name)


@dataclass
class Plan:
    inputs: list                   # Values of the network's inputs, in order
    nodes: list                    # Nodes in topological order (as written)
    output: str                    # the node the loss (or upstream error) starts from
    active: list = field(default_factory=list)     # nodes the backward pass runs through, in forward order
    readers: dict = field(default_factory=dict)    # value name -> active nodes reading it, forward order

    def __post_init__(self):
        self._by_name = {node.name: node for node in self.nodes}
        self.start(self.output)

    def start(self, name: str):
        """Set where the backward pass starts: only that node and what it depends on get
        deltas (layers after it, or on branches the loss never reads, run forward only)."""
        self.output = name
        reached = {name}
        for node in reversed(self.nodes):
            if node.name in reached:
                reached.update(v.name for v in node.reads)
        self.active = [node for node in self.nodes if node.name in reached]
        self.readers = {}
        for node in self.active:
            for value in node.reads:
                readers = self.readers.setdefault(value.name, [])
                if node not in readers:
                    readers.append(node)
        self._reached = reached

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def reaches(self, value_name: str) -> bool:
        """Whether the backward pass gives this value (an input or a layer) a delta."""
        return value_name in self._reached

    def value(self, name: str) -> Value:
        """The Value called `name` (an input's name or a layer's name)."""
        for value in self.inputs:
            if value.name == name:
                return value
        return self._by_name[name].value

    def completes(self, node: Node) -> list:
        """The values whose delta is complete once `node` has run backward: those it reads
        and that no earlier node (in forward order) reads too."""
        done = []
        for value in node.reads:
            if value in done:
                continue
            if self.readers.get(value.name, [None])[0] is node:
                done.append(value)
        return done

    def readers_of_delta(self, delta_name: str):
        """The nodes whose backward pass sends something into the delta called
        `delta_name` (one for a chain, several where a value is read twice)."""
        for name, readers in self.readers.items():
            if self.value(name).delta == delta_name:
                return list(readers)
        return []
