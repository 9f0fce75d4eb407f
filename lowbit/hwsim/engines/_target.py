"""Per-profile data the engines derive once (:class:`Target`) and the description of one
GEMM ready to tile (:class:`GemmWork`). How a profile's memory levels are read is
documented in :mod:`lowbit.hwsim.engines._tiling`."""

from __future__ import annotations

from .._cost_rules import RuleSet
from ..profile import HardwareProfile, Precision
from .dataflows import Mapping, mapping_for

__all__ = ["Target", "GemmWork"]

_ROLES = ("weights", "inputs", "outputs")


class Target:
    """What the engines derive once per profile: ports, homes, capacities, mapping, cost
    rules."""

    __slots__ = (
        "profile",
        "mapping",
        "ports",
        "bandwidth",
        "port_of",
        "home",
        "levels",
        "double",
        "inner_pj",
        "home_pj",
        "gk",
        "tile_cycles",
        "rules",
        "peak_cache",
        "mode_cache",
        "memo",
        "plan_key",
    )

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self.mapping: Mapping = mapping_for(profile.compute)
        ports: list = []
        self.port_of: dict[str, int] = {}
        for role in _ROLES:
            level = profile.off_chip(role)
            if level not in ports:
                ports.append(level)
            self.port_of[role] = ports.index(level)
        self.ports = tuple(ports)
        self.bandwidth = tuple(float(p.bandwidth_bytes_per_cycle) for p in ports)
        levels: list = []
        self.home: dict[str, int | None] = {}
        #: transfers of a role overlap compute (double-buffered home, or streamed: no home)
        self.double: dict[str, bool] = {}
        self.inner_pj: dict[str, float] = {}
        self.home_pj: dict[str, float] = {}
        for role in _ROLES:
            on = profile.on_chip(role)
            if not on:
                self.home[role] = None
                self.double[role] = True
                continue
            big = max(on, key=lambda m: m.size_bytes)
            if big not in levels:
                levels.append(big)
            self.home[role] = levels.index(big)
            self.double[role] = big.double_buffered
            self.inner_pj[role] = on[-1].energy_pj_per_byte
            self.home_pj[role] = big.energy_pj_per_byte
        #: (active capacity bytes, holds weights, holds inputs, holds outputs) per home level
        self.levels = tuple(
            (
                m.size_bytes / 2 if m.double_buffered else float(m.size_bytes),
                self.home["weights"] == i,
                self.home["inputs"] == i,
                self.home["outputs"] == i,
            )
            for i, m in enumerate(levels)
        )
        compute = profile.compute
        # K block of a tile: the array's reduction width (os streams K: any length), at the
        # base rate whatever the bits, so the tiling candidates do not depend on them
        self.gk = compute.rows if compute.kind == "vector" or compute.dataflow != "os" else 1
        self.tile_cycles = profile.overheads.tile_cycles
        #: the profile's cost rules (its runtime's quirks), by hook
        self.rules = RuleSet(profile.overheads)
        self.peak_cache: dict[tuple[int, int], float] = {}
        self.mode_cache: dict[tuple[int, int], Precision] = {}
        #: engine-owned results cache for this profile, (the layer but its name,
        #: input_on_chip) -> result (:mod:`.analytic`)
        self.memo: dict = {}
        #: everything a GEMM's tiling reads of the target (:mod:`._plan`, :mod:`._tiling`,
        #: :mod:`._bounds`, :mod:`._gemm_plan`): profiles equal in these plan a GEMM alike
        self.plan_key = (
            self.mapping.granularity(),
            self.gk,
            self.bandwidth,
            tuple(self.port_of.items()),
            tuple(self.double.items()),
            self.levels,
            self.tile_cycles,
        )

    def mode(self, w_bits: int, a_bits: int) -> Precision:
        """``compute.resolve(w_bits, a_bits)``, cached (raises UnsupportedPrecision)."""
        key = (w_bits, a_bits)
        mode = self.mode_cache.get(key)
        if mode is None:
            mode = self.mode_cache[key] = self.profile.compute.resolve(w_bits, a_bits)
        return mode

    def capacity(self, role: str) -> float:
        """Active bytes of ``role``'s home level (0 if it has none)."""
        home = self.home[role]
        return 0.0 if home is None else self.levels[home][0]

    def holds(self, w_role: str) -> tuple[tuple[float, bool, bool, bool], ...]:
        """Home levels as (capacity, holds the weight operand, inputs, outputs); the weight
        operand of an attention MatMul (``w_role == "inputs"``) lives with the inputs."""
        if w_role == "weights":
            return self.levels
        return tuple((cap, has_i, has_i, has_o) for cap, _, has_i, has_o in self.levels)


class GemmWork:
    """One GEMM ready to tile: shapes, compute cycles and bytes per element of each operand.

    ``w_role`` is "weights", or "inputs" for the activation operand of an attention MatMul.
    """

    __slots__ = ("G", "M", "N", "K", "cycles", "wb", "ib", "ob", "w_role", "in_chip", "out_chip")

    def __init__(self, G, M, N, K, cycles, wb, ib, ob, w_role, in_chip, out_chip):  # noqa: D107
        self.G, self.M, self.N, self.K = G, M, N, K
        #: compute cycles of one instance
        self.cycles = cycles
        #: bytes per weight element (compressed, with index metadata), per element of the
        #: M×K input operand (its ifmap share), per output element
        self.wb, self.ib, self.ob = wb, ib, ob
        self.w_role = w_role
        #: inputs already on chip (no reads) / outputs kept on chip (no write-back)
        self.in_chip, self.out_chip = in_chip, out_chip
