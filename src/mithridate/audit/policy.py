"""The audit policy: when does a data version fail the gate?

An audit (:func:`mithridate.audit.pipeline.run_audit`) scores every sample, flags the suspicious
ones and summarises the flags overall, per class, per contributor and against the previous
version. A :class:`Policy` turns that summary into a verdict: every check below gives a
:class:`PolicyResult`, and the audit fails when any check fails.

The defaults need no knowledge of the poison rate. They were set on clean and poisoned versions
of breast_cancer, wine and digits (10 seeds each; the figures are in the docs page "Gate your
retraining pipeline"): on clean data the default detector ensemble flags 2-5% of the samples
of a table and up to 5.3% of digits (read through a network's penultimate layer), with up to 22%
in one class, so the overall and per-class limits sit above that (naturally confusable image
classes come closer: Fashion-MNIST's shirts and coats up to 26-31%); the contributor checks (a
contributor's flag rate, its reputation) catch poisoning concentrated in a few contributors
long before it moves the overall share.

Checks (each one disabled by setting its limit to ``null`` / ``None``):

===============================  =================================================================
name                             fails when
===============================  =================================================================
``flagged_share``                flagged samples / all samples > ``max_flagged_share``
``class_flagged_share``          in a class with >= ``min_class_size`` samples, flagged share >
                                 ``max_class_flagged_share``
``contributor_flagged``          for a contributor with >= ``min_contributor_samples`` samples in
                                 this version, flagged share > ``max_contributor_flagged_share``
``reputation``                   a contributor with >= ``reputation_min_samples`` judged samples and
                                 samples in this version has its whole credible interval (level
                                 ``credible_level``, simultaneous over those contributors unless
                                 ``simultaneous: false``) above the population flag rate (its
                                 class mix's rate); with a ledger, also when one lies above in this
                                 version's new and changed samples alone (level twice as strict)
``contributor_concentration``    the samples ranked most suspicious come from a few contributors:
                                 the within-class permutation p-value of their excess over chance
                                 <= ``max_concentration_p``; with a ledger, also the same test on
                                 this version's new and changed samples alone at half that limit
``relabelled_share``             relabelled samples / samples of the previous version >
                                 ``max_relabelled_share`` (needs a previous version: a ledger)
``new_flagged_share``            flagged new samples / new samples > ``max_new_flagged_share``, when
                                 at least ``min_new_samples`` samples are new (needs a previous
                                 version)
``roni``                         with ``roni: true``, a contributor whose batch significantly hurts a
                                 validation set (leave-contributor-out RONI)
===============================  =================================================================

YAML format (every key optional; unknown keys are refused, so typos cannot silently disable a
check)::

    version: 1
    detection:
      detectors: auto              # the ensemble members, or a list: [robust-distance, knn, ...]
      parameters: null             # members' parameters, e.g. {robust-distance: {min_variance_ratio: 0.01}}
      roni: false                  # also run leave-contributor-out RONI (slower, stronger)
    flagged:
      max_share: 0.15              # all samples
      max_class_share: 0.30        # any class with at least min_class_size samples
      min_class_size: 20
    contributors:
      max_share: 0.35              # any contributor with at least min_samples samples
      min_samples: 10
      reputation: true             # credible interval entirely above the rate its class mix predicts
      reputation_min_samples: 10
      credible_level: 0.99
      simultaneous: true           # credible_level holds for all tested contributors together (Bonferroni)
      concentration_p: 0.01        # top-ranked samples concentrated in few contributors (permutation test)
    changes:                       # against the last audited version (needs a ledger)
      max_relabelled_share: 0.01
      max_new_flagged_share: 0.25
      min_new_samples: 50

Examples
--------
>>> p = Policy.default()
>>> p.max_flagged_share
0.15
>>> summary = {"n_samples": 200, "n_flagged": 40, "share_flagged": 0.2, "classes": [],
...            "contributors": [], "diff": None}
>>> [(r.name, r.passed) for r in p.evaluate(summary)][:1]
[('flagged_share', False)]
>>> Policy.from_dict({"flagged": {"max_share": 0.2}}).max_flagged_share
0.2
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from mithridate.errors import ConfigError

POLICY_VERSION = 1
DEFAULT_DETECTORS = "auto"  # the ensemble's default members (see Ensemble)

#: YAML section -> {YAML key: Policy field}
SECTIONS: dict = {
    "detection": {"detectors": "detectors", "parameters": "detector_parameters", "roni": "roni"},
    "flagged": {"max_share": "max_flagged_share", "max_class_share": "max_class_flagged_share",
                "min_class_size": "min_class_size"},
    "contributors": {"max_share": "max_contributor_flagged_share", "min_samples": "min_contributor_samples",
                     "reputation": "reputation", "reputation_min_samples": "reputation_min_samples",
                     "credible_level": "credible_level", "simultaneous": "simultaneous_intervals",
                     "concentration_p": "max_concentration_p"},
    "changes": {"max_relabelled_share": "max_relabelled_share", "max_new_flagged_share": "max_new_flagged_share",
                "min_new_samples": "min_new_samples"},
}
_SHARES = ("max_flagged_share", "max_class_flagged_share", "max_contributor_flagged_share",
           "max_relabelled_share", "max_new_flagged_share", "max_concentration_p")
_COUNTS = ("min_class_size", "min_contributor_samples", "reputation_min_samples", "min_new_samples")
_BOOLS = ("roni", "reputation", "simultaneous_intervals")


def _checked_detectors(dets: Any) -> Union[str, tuple]:
    """The policy's ``detectors``: ``"auto"`` or a tuple of distinct detector names."""
    if isinstance(dets, str) and dets.strip().lower() == "auto":
        return "auto"
    if isinstance(dets, str) or not isinstance(dets, (list, tuple)) or not dets:
        raise ConfigError(f"policy: detectors must be 'auto' or a non-empty list of detector names, got {dets!r}")
    if not all(isinstance(d, str) and d.strip() for d in dets):
        raise ConfigError(f"policy: detectors must be detector names (strings), got {list(dets)!r}")
    if len({d.lower() for d in dets}) != len(dets):
        raise ConfigError(f"policy: detectors lists a detector twice: {list(dets)!r}")
    from mithridate import registry

    known = registry.names("detector")
    unknown = [d for d in dets if d.strip().lower() not in known or d.strip().lower() == "ensemble"]
    if unknown:
        raise ConfigError(f"policy: detectors names {unknown[0]!r}, which is not a detector; known: "
                          f"{', '.join(k for k in known if k != 'ensemble')}")
    return tuple(d.strip() for d in dets)


def _checked_parameters(params: Any, detectors: Union[str, tuple]) -> Optional[dict]:
    """The policy's ``parameters``: None, or {member name: {parameter: value}} that the named
    detectors accept (checked by constructing each one now, so a typo fails before any audit)."""
    if params is None or (isinstance(params, Mapping) and not params):
        return None
    example = "e.g. {robust-distance: {min_variance_ratio: 0.01}}"
    if not isinstance(params, Mapping):
        raise ConfigError(f"policy: detector_parameters must map detector names to their parameters ({example}), "
                          f"got {params!r}")
    from mithridate import registry
    from mithridate.defenses.detect.ensemble import named_members

    members = named_members(detectors)
    out: dict = {}
    for name, body in params.items():
        if not isinstance(name, str) or not isinstance(body, Mapping) or not all(isinstance(k, str) for k in body):
            raise ConfigError(f"policy: detector_parameters must map detector names to their parameters ({example}), "
                              f"got {name!r}: {body!r}")
        key = name.strip().lower()
        if key not in members:
            raise ConfigError(f"policy: detector_parameters names {name!r}, which is not an ensemble member "
                              f"({', '.join(sorted(members))})")
        try:  # unknown parameters fail here, with the detector's name
            registry.create("detector", key, **dict(body))
        except ConfigError as exc:
            raise ConfigError(f"policy: detector_parameters for {key}: {exc}") from None
        out[key] = dict(body)
    return out


def level_text(level: float) -> str:
    """A credible level as a percentage with the digits it needs (99.9%, 99.95%; at most 3 decimals)."""
    for nd in range(3):
        txt = f"{100 * level:.{nd}f}"
        if abs(float(txt) - 100 * level) < 1e-7:
            return txt + "%"
    return f"{100 * level:.3f}%"


def level_description(summary: Mapping) -> str:
    """The reputation check's level as the check and the report state it, from an audit summary:
    '99%', or '99% simultaneous (10 contributors, each at 99.9%)'."""
    txt = level_text(float(summary.get("credible_level") or 0.95))
    n, each = summary.get("n_contributors_tested"), summary.get("credible_level_each")
    if n and int(n) > 1 and each is not None:
        txt += f" simultaneous ({int(n)} contributors, each at {level_text(float(each))})"
    return txt


@dataclass(frozen=True)
class PolicyResult:
    """The outcome of one policy check.

    Attributes
    ----------
    name : str
        The check (``flagged_share``, ``class_flagged_share``, ...; see the module docstring).
    passed : bool
    value : float or None
        The worst observed value (None when the check did not apply).
    limit : float or None
        The policy's limit (None for checks without a numeric limit, e.g. ``reputation``).
    message : str
        One line for people, naming the worst class / contributor where there is one.
    subject : str or None
        The class or contributor the value belongs to.
    """

    name: str
    passed: bool
    value: Optional[float]
    limit: Optional[float]
    message: str
    subject: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Policy:
    """Thresholds that turn an audit summary into pass / fail (see the module docstring).

    Parameters
    ----------
    max_flagged_share : float or None, default=0.15
        Largest share of flagged samples overall.
    max_class_flagged_share : float or None, default=0.30
        Largest share of flagged samples in any one class with >= ``min_class_size`` samples.
    min_class_size : int, default=20
    max_contributor_flagged_share : float or None, default=0.35
        Largest share of flagged samples of any contributor with >= ``min_contributor_samples``
        samples in this version.
    min_contributor_samples : int, default=10
    reputation : bool, default=True
        Fail when a contributor's credible interval lies entirely above the rate expected from its
        class mix (each class it sends at that class's flag rate; the population rate
        when it sends every class in the usual proportions).
    reputation_min_samples : int, default=10
        Judged samples (cumulative over audits when a ledger is used) a contributor needs before
        its reputation can fail the audit.
    credible_level : float, default=0.99
        Level of the credible intervals.
    simultaneous_intervals : bool, default=True
        ``credible_level`` holds for the m contributors the check tests together (this version's,
        with >= ``reputation_min_samples`` judged samples): each interval is computed at level
        1 - (1 - credible_level) / m (Bonferroni), so the chance that *some* honest contributor
        fails the check by chance does not grow with the number of contributors. False: each
        contributor's interval at ``credible_level`` on its own (with m contributors the chance
        of a false alarm is then up to m times 1 - ``credible_level``: ten contributors at 99%,
        up to ~10% of clean audits; on 20 clean 6,000-image Fashion-MNIST audits one failed so).
    max_concentration_p : float or None, default=0.01
        Fail when the most suspicious samples come from a few contributors more than chance
        explains: the permutation p-value of
        :func:`~mithridate.audit.concentration.concentration_test` (contributors exchanged within
        classes) is at most this. It reads the ensemble's ranking, not its flags, so it also
        catches poisons ranked high but left unflagged; on data whose contributors are assigned
        at random it fails in at most this share of audits.
    max_relabelled_share : float or None, default=0.01
        Largest share of relabelled samples (same content, another label) relative to the
        previous version's size.
    max_new_flagged_share : float or None, default=0.25
        Largest share of flagged samples among the samples new since the previous version.
    min_new_samples : int, default=50
        New samples needed before ``max_new_flagged_share`` applies.
    detectors : "auto" or tuple of str, default="auto"
        Members of the detector ensemble (registry names). ``"auto"``: the ensemble's default —
        robust distance, kNN label consistency and confident learning, plus spectral signatures
        when the features come from a network (images).
    detector_parameters : mapping or None, default=None
        Parameters of the ensemble's members, by name (YAML ``detection.parameters``):
        ``{"robust-distance": {"min_variance_ratio": 0.01}}``. Each name must be a member and
        each parameter one the detector takes (checked when the policy is read).
    roni : bool, default=False
        Also run leave-contributor-out RONI and fail on a contributor with a significantly
        negative impact.

    Examples
    --------
    >>> Policy(max_flagged_share=None).max_flagged_share is None       # check disabled
    True
    >>> Policy(max_flagged_share=2.0)
    Traceback (most recent call last):
    ...
    mithridate.errors.ConfigError: policy: max_flagged_share must be a share in [0, 1] or null, got 2.0
    """

    max_flagged_share: Optional[float] = 0.15
    max_class_flagged_share: Optional[float] = 0.30
    min_class_size: int = 20
    max_contributor_flagged_share: Optional[float] = 0.35
    min_contributor_samples: int = 10
    reputation: bool = True
    reputation_min_samples: int = 10
    credible_level: float = 0.99
    simultaneous_intervals: bool = True
    max_concentration_p: Optional[float] = 0.01
    max_relabelled_share: Optional[float] = 0.01
    max_new_flagged_share: Optional[float] = 0.25
    min_new_samples: int = 50
    detectors: Union[str, tuple] = DEFAULT_DETECTORS
    detector_parameters: Optional[dict] = field(default=None, hash=False)
    roni: bool = False

    def __post_init__(self) -> None:
        for name in _SHARES:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
                raise ConfigError(f"policy: {name} must be a share in [0, 1] or null, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in _COUNTS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"policy: {name} must be a non-negative integer, got {v!r}")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"policy: {name} must be true or false, got {getattr(self, name)!r}")
        if self.max_concentration_p == 0.0:
            raise ConfigError("policy: max_concentration_p must be above 0 (a permutation p-value is never 0); "
                              "use null to switch the check off")
        lvl = self.credible_level
        if isinstance(lvl, bool) or not isinstance(lvl, (int, float)) or not 0 < lvl < 1:
            raise ConfigError(f"policy: credible_level must be in (0, 1), got {lvl!r}")
        object.__setattr__(self, "credible_level", float(lvl))
        object.__setattr__(self, "detectors", _checked_detectors(self.detectors))
        object.__setattr__(self, "detector_parameters", _checked_parameters(self.detector_parameters, self.detectors))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "Policy":
        """The default policy (the values in the class signature)."""
        return cls()

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "Policy":
        """Build a policy from the nested mapping of the YAML format (module docstring).

        Raises
        ------
        ConfigError
            Unknown sections or keys (the message names them and lists the known ones), values of
            the wrong type or out of range.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"policy: expected a mapping of sections, got {type(data).__name__}")
        kwargs: dict = {}
        for section, body in data.items():
            if section == "version":
                if body != POLICY_VERSION:
                    raise ConfigError(f"policy: version must be {POLICY_VERSION}, got {body!r}")
                continue
            if section not in SECTIONS:
                known = ["version"] + list(SECTIONS)
                raise ConfigError(f"policy: unknown section {section!r}; known sections: {known}")
            if body is None:
                continue
            if not isinstance(body, Mapping):
                raise ConfigError(f"policy: section {section!r} must be a mapping of keys, got {type(body).__name__}")
            for key, value in body.items():
                if key not in SECTIONS[section]:
                    raise ConfigError(
                        f"policy: unknown key {section}.{key}; known keys in {section}: {list(SECTIONS[section])}"
                    )
                name = SECTIONS[section][key]
                if name == "detectors" and isinstance(value, list):
                    value = tuple(value)
                kwargs[name] = value
        try:
            return cls(**kwargs)
        except ConfigError as exc:  # name the YAML key rather than the field
            msg = str(exc)
            for section, keys in SECTIONS.items():
                for key, name in keys.items():
                    if msg.startswith(f"policy: {name} "):
                        msg = msg.replace(f"policy: {name} ", f"policy: {section}.{key} ", 1)
            raise ConfigError(msg) from None

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "Policy":
        """Read a policy file (format in the module docstring); an empty file is the default.

        Raises
        ------
        ConfigError
            A missing or unreadable file, invalid YAML, unknown keys, wrong types.
        """
        import yaml

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"policy file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read policy file {p}: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = " ".join(str(exc).split())
            raise ConfigError(f"policy file {p} is not valid YAML: {line}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None

    def to_dict(self) -> dict:
        """The nested mapping of the YAML format (``from_dict(p.to_dict()) == p``)."""
        out: dict = {"version": POLICY_VERSION}
        for section, keys in SECTIONS.items():
            out[section] = {}
            for key, name in keys.items():
                v = getattr(self, name)
                out[section][key] = list(v) if isinstance(v, tuple) else v
        return out

    def to_yaml(self) -> str:
        """The policy as a YAML document (a starting point for a policy file)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, summary: Mapping[str, Any]) -> list:
        """Run every check on an audit summary; return one :class:`PolicyResult` per check.

        Parameters
        ----------
        summary : mapping
            The ``summary`` of an :class:`~mithridate.audit.pipeline.AuditResult` (as in
            ``summary.json``): ``n_samples``, ``n_flagged``, ``classes`` (``label``, ``n``,
            ``flagged``), ``contributors`` (``contributor``, ``n``, ``flagged``, and for the
            reputation ``n_judged``, ``ci_lower``, ``ci_upper``, ``population_rate``,
            ``above_population``), ``diff`` (None, or ``counts`` and ``n_new_flagged``) and,
            with RONI, ``roni`` (``batch``, ``flagged``, ``t``).

        Returns
        -------
        list of PolicyResult
            Disabled checks are left out; checks that do not apply (no previous version, no
            contributors) pass with ``value=None``.
        """
        if not isinstance(summary, Mapping):
            raise ConfigError(f"evaluate expects the audit summary (a mapping), got {type(summary).__name__}")
        out = []
        n = int(summary.get("n_samples") or 0)
        k = int(summary.get("n_flagged") or 0)
        if self.max_flagged_share is not None:
            share = k / n if n else 0.0
            ok = share <= self.max_flagged_share
            out.append(PolicyResult(
                "flagged_share", ok, share, self.max_flagged_share,
                f"{k} of {n} samples flagged ({_pct(share)}; limit {_pct(self.max_flagged_share)})",
            ))
        if self.max_class_flagged_share is not None:
            out.append(self._worst_share(
                "class_flagged_share", summary.get("classes") or [], "label", self.max_class_flagged_share,
                self.min_class_size, "class"))
        contributors = summary.get("contributors") or []
        if self.max_contributor_flagged_share is not None:
            out.append(self._worst_share(
                "contributor_flagged", contributors, "contributor", self.max_contributor_flagged_share,
                self.min_contributor_samples, "contributor"))
        if self.reputation:
            out.append(self._reputation(contributors, summary))
        if self.max_concentration_p is not None:
            out.append(self._concentration(summary.get("concentration"), summary.get("batch_concentration")))
        diff = summary.get("diff")
        counts = (diff or {}).get("counts") if isinstance(diff, Mapping) else None
        has_prev = bool(counts) and (diff.get("base_version") is not None or int(counts.get("n_old", 0)) > 0)
        if self.max_relabelled_share is not None:
            if not has_prev:
                out.append(PolicyResult("relabelled_share", True, None, self.max_relabelled_share,
                                        "no previous version to compare with (first audit, or no ledger)"))
            else:
                r, n_old = int(counts.get("relabelled", 0)), int(counts.get("n_old", 0))
                share = r / n_old if n_old else (1.0 if r else 0.0)
                senders = list((diff.get("relabelled_by_contributor") or {}).items()) if r else []
                who = ("; sent by " + ", ".join(f"{k!r} {v}" for k, v in senders[:3])
                       + (f" and {len(senders) - 3} more" if len(senders) > 3 else "")) if senders else ""
                passed = share <= self.max_relabelled_share
                out.append(PolicyResult(
                    "relabelled_share", passed, share, self.max_relabelled_share,
                    f"{r} samples relabelled since the previous version ({_pct(share)} of its {n_old}; "
                    f"limit {_pct(self.max_relabelled_share)}){who}",
                    subject=senders[0][0] if senders and not passed else None))
        if self.max_new_flagged_share is not None:
            n_new = int(counts.get("new", 0)) if has_prev else 0
            if not has_prev:
                out.append(PolicyResult("new_flagged_share", True, None, self.max_new_flagged_share,
                                        "no previous version to compare with (first audit, or no ledger)"))
            elif n_new < max(self.min_new_samples, 1):
                out.append(PolicyResult("new_flagged_share", True, None, self.max_new_flagged_share,
                                        f"{n_new} new samples, fewer than min_new_samples={self.min_new_samples}"))
            else:
                kf = int(diff.get("n_new_flagged", 0))
                share = kf / n_new
                out.append(PolicyResult(
                    "new_flagged_share", share <= self.max_new_flagged_share, share, self.max_new_flagged_share,
                    f"{kf} of {n_new} new samples flagged ({_pct(share)}; limit {_pct(self.max_new_flagged_share)})"))
        if self.roni:
            out.append(self._roni(summary.get("roni")))
        return out

    @staticmethod
    def _worst_share(name: str, groups: list, key: str, limit: float, min_n: int, what: str) -> PolicyResult:
        eligible = [g for g in groups if int(g.get("n", 0)) >= max(min_n, 1)]
        plural = f"{what}es" if what == "class" else f"{what}s"
        small = [g for g in groups if 0 < int(g.get("n", 0)) < max(min_n, 1) and int(g["flagged"]) / int(g["n"]) > limit]
        small_txt = ""
        if small:  # over the limit on too few samples to count: say so rather than stay silent
            small.sort(key=lambda g: (-int(g["flagged"]) / int(g["n"]), -int(g["n"])))
            names = ", ".join(f"{str(g[key])!r} {int(g['flagged'])} of {int(g['n'])}" for g in small[:5])
            small_txt = (f"; {len(small)} {what if len(small) == 1 else plural} with fewer than {min_n} samples "
                         f"over the limit, not counted: {names}" + (" ..." if len(small) > 5 else ""))
        if not groups and what == "contributor":  # as reputation and concentration say it
            return PolicyResult(name, True, None, limit, "no contributor information")
        if not eligible:
            return PolicyResult(name, True, None, limit, f"no {what} has at least {min_n} samples{small_txt}")
        worst = max(eligible, key=lambda g: (int(g["flagged"]) / int(g["n"]), int(g["n"])))
        share = int(worst["flagged"]) / int(worst["n"])
        bad = [g for g in eligible if int(g["flagged"]) / int(g["n"]) > limit]
        who = str(worst[key])
        msg = (f"worst {what} with at least {min_n} samples {who!r}: {int(worst['flagged'])} of {int(worst['n'])} "
               f"flagged ({_pct(share)}; limit {_pct(limit)})")
        if len(bad) > 1:
            msg += f"; {len(bad)} {plural} over the limit"
        return PolicyResult(name, share <= limit, share, limit, msg + small_txt, subject=who)

    def _reputation(self, contributors: list, summary: Mapping) -> PolicyResult:
        present = [c for c in contributors if int(c.get("n", 0)) > 0 and c.get("ci_lower") is not None]
        if not present:
            if any(int(c.get("n", 0)) > 0 for c in contributors):
                return PolicyResult("reputation", True, None, None,
                                    "no contributor of this version has a reputation yet: none of their samples is "
                                    "new to the ledger (e.g. contributors renamed since the last audit)")
            return PolicyResult("reputation", True, None, None, "no contributor information")
        judged = [c for c in present if int(c.get("n_judged", c.get("n", 0))) >= self.reputation_min_samples]
        bad = [c for c in judged if bool(c.get("above_population"))]
        small = [c for c in present if bool(c.get("above_population")) and c not in judged]
        pop = present[0].get("population_rate")
        pop_txt = "n/a" if pop is None else _pct(float(pop))
        lvl = level_description({**summary, "credible_level": self.credible_level})
        small_txt = ""
        if small:  # above the population too, but on too few samples to fail the gate: say so
            names = ", ".join(f"{str(c['contributor'])!r} ({int(c.get('n_judged', c.get('n', 0)))})" for c in small[:5])
            small_txt = (f"; {len(small)} contributor(s) with fewer than {self.reputation_min_samples} judged samples "
                         f"also lie above it but are too small to fail the gate: {names}" + (" ..." if len(small) > 5 else ""))
        batch = summary.get("batch_reputation")
        batch_bad = []
        if isinstance(batch, Mapping):
            batch_bad = [c for c in batch.get("contributors") or []
                         if bool(c.get("above_population")) and int(c.get("n", 0)) >= self.reputation_min_samples]
            batch_bad.sort(key=lambda c: -(float(c.get("ci_lower") or 0) - float(c.get("baseline_rate") or 0)))
        batch_txt = ""
        if batch_bad:
            b = batch_bad[0]
            names = ", ".join(repr(str(c["contributor"])) for c in batch_bad[:5]) + (" ..." if len(batch_bad) > 5 else "")
            blvl = level_description(batch)
            batch_txt = (f"in this version's {int(batch.get('n_samples') or 0)} new or changed samples, "
                         f"{len(batch_bad)} contributor(s) flagged far more often than the others' new samples "
                         f"({_pct(float(batch.get('population_rate') or 0))}) and than their class mix predicts: "
                         f"{names}; worst {str(b['contributor'])!r} {int(b['flagged'])} of {int(b['n'])} flagged, "
                         f"{blvl} interval [{_pct(float(b['ci_lower']))}, {_pct(float(b['ci_upper']))}] against "
                         f"{_pct(float(b['baseline_rate']))} expected")
        if not bad:
            if batch_bad:
                b = batch_bad[0]
                return PolicyResult("reputation", False, float(b["ci_lower"]), None,
                                    batch_txt[0].upper() + batch_txt[1:] + " (over their whole history they do not "
                                    f"stand out){small_txt}", subject=str(b["contributor"]))
            return PolicyResult("reputation", True, None, None,
                                f"no contributor with at least {self.reputation_min_samples} judged samples has its "
                                f"{lvl} credible interval above the population rate {pop_txt}{small_txt}"
                                + ("; nor in this version's new samples" if isinstance(batch, Mapping) else ""))
        bad.sort(key=lambda c: -float(c.get("ci_lower") or 0))
        w = bad[0]
        names = ", ".join(repr(str(c["contributor"])) for c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        base = w.get("baseline_rate")
        base_txt = "" if base is None else f" against {_pct(float(base))} expected from its class mix"
        share, n_now = w.get("share"), int(w.get("n", 0))
        judged_now = int(w.get("n_judged", n_now))
        if share is not None and n_now and judged_now > n_now and float(share) <= float(base if base is not None else pop or 0):
            # its excess lies in samples judged at earlier versions: say so, the current data look fine
            base_txt += (f" (in this version {_pct(float(share))} of its {n_now} samples are flagged, not above: the "
                         "excess is in samples of earlier versions; `mithridate ledger contributors` shows its history)")
        return PolicyResult(
            "reputation", False, float(w["ci_lower"]), None,
            f"{len(bad)} contributor(s) flagged far more often than the population ({pop_txt}) and than their class "
            f"mix predicts: {names}; worst {str(w['contributor'])!r} {lvl} interval "
            f"[{_pct(float(w['ci_lower']))}, {_pct(float(w['ci_upper']))}]{base_txt}{small_txt}"
            + (f"; also {batch_txt}" if batch_txt else ""),
            subject=str(w["contributor"]))

    def _concentration(self, conc: Any, batch: Any = None) -> PolicyResult:
        """The whole version's test at ``max_concentration_p``; with a ledger, also the test on this
        version's new and changed samples alone at half that limit (the two together keep the chance of
        a false alarm near 1.5 times the one test's)."""
        whole = self._concentration_one(conc, self.max_concentration_p, "")
        if not isinstance(batch, Mapping) or batch.get("p_value") is None:
            return whole
        half = self.max_concentration_p / 2.0
        part = self._concentration_one(batch, half, f"of this version's {int(batch.get('n_samples') or 0)} new or "
                                                      "changed samples, ")
        if not part.passed and whole.passed:
            return PolicyResult(whole.name, False, part.value, half, part.message[0].upper() + part.message[1:]
                                + "; the whole version's ranking does not show it", subject=part.subject)
        if not part.passed:
            return PolicyResult(whole.name, False, whole.value, whole.limit, whole.message + "; also " + part.message,
                                subject=whole.subject)
        return PolicyResult(whole.name, whole.passed, whole.value, whole.limit,
                            whole.message + f"; nor among this version's new samples (p = {float(batch['p_value']):.3g}, "
                                            f"limit {half:g})", subject=whole.subject)

    def _concentration_one(self, conc: Any, limit: float, scope: str) -> PolicyResult:
        name = "contributor_concentration"
        if not isinstance(conc, Mapping):
            return PolicyResult(name, True, None, limit, "no contributor information")
        p = conc.get("p_value")
        if p is None:
            return PolicyResult(name, True, None, limit, f"not tested: {conc.get('reason') or 'no result'}")
        p = float(p)
        k = conc.get("top_k")
        cls = conc.get("top_class")
        where = f"{k} most suspicious samples" + (f" of class {str(cls)!r}" if cls is not None else "")
        where = f"{scope}the {where}"
        named = [c for c in conc.get("contributors") or [] if isinstance(c, Mapping)]
        p_txt = f"p = {p:.3g}, {int(conc.get('n_permutations') or 0)} permutations"
        if p > limit:
            return PolicyResult(name, True, p, limit,
                                f"the most suspicious samples are not concentrated in a few contributors beyond the "
                                f"limit (most concentrated set: {where}; {p_txt}; limit {limit:g})")
        from mithridate.audit.concentration import standouts

        shown, rest = standouts(named, 3)  # those that stand out alone are named; the rest counted
        parts = [f"{str(c['contributor'])!r} {int(c['top'])} (expected {float(c['expected']):.1f})" for c in shown]
        more = f" and {rest} more above expectation" if rest > 0 else ""
        who = f": {', '.join(parts)}{more}" if parts else ""
        first = next((c for c in named if not c.get("pooled")), None)
        return PolicyResult(name, False, p, limit,
                            f"{where} come from few contributors more than chance explains "
                            f"({p_txt}; limit {limit:g}){who}",
                            subject=str(first["contributor"]) if first else None)

    @staticmethod
    def _roni(rows: Any) -> PolicyResult:
        if not rows:
            return PolicyResult("roni", True, None, None, "RONI did not run (no contributors or too little data)")
        bad = [r for r in rows if r.get("flagged")]
        if not bad:
            return PolicyResult("roni", True, None, None, "no contributor batch hurts the validation set significantly")
        bad.sort(key=lambda r: float(r.get("t") or 0))
        w = bad[0]
        return PolicyResult("roni", False, w.get("t"), None,
                            f"{len(bad)} contributor batch(es) hurt the validation set; worst {str(w['batch'])!r} "
                            f"(t = {float(w.get('t') or 0):.1f})", subject=str(w["batch"]))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def policy_field_names() -> list:
    """The :class:`Policy` field names (for CLI overrides such as ``--max-flagged-share``)."""
    return [f.name for f in fields(Policy)]
