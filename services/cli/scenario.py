"""A realistic programme for the main job: two territories, their funders, sites and booklets.

Names follow the field (Bourgogne-Franche-Comté: 5-pass booklets, Region/State/Enedis; Lozère:
10-pass booklets with the Département among four funders). Identifiers are generated valid:
SIRETs pass the Luhn check, IBANs are real French BBANs with their national key."""

from __future__ import annotations

import random
from dataclasses import dataclass

from schwifty import IBAN
from stdnum import luhn

PATHS = ["basic-skills", "access-to-rights", "professional-insertion", "parenting"]


@dataclass(frozen=True)
class FunderSpec:
    key: str
    name: str
    kind: str


@dataclass(frozen=True)
class ProgrammeSpec:
    key: str
    name: str
    territory: str
    passes_per_booklet: int
    shares: list[tuple[str, int]]  # funder key, basis points, in the programme's order
    booklets: int


@dataclass(frozen=True)
class SiteSpec:
    name: str
    programmes: list[str]


FUNDERS = [
    FunderSpec("bfc", "Région Bourgogne-Franche-Comté", "region"),
    FunderSpec("occitanie", "Région Occitanie", "region"),
    FunderSpec("anct", "État — Agence nationale de la cohésion des territoires", "state"),
    FunderSpec("lozere", "Département de la Lozère", "departement"),
    FunderSpec("enedis", "Enedis", "enedis"),
]
PROGRAMMES = [
    ProgrammeSpec(
        "bfc",
        "Pass Numérique Bourgogne-Franche-Comté 2026",
        "Bourgogne-Franche-Comté",
        5,
        [("bfc", 5000), ("anct", 3000), ("enedis", 2000)],
        60,
    ),
    ProgrammeSpec(
        "lozere",
        "Pass Numérique Lozère 2026",
        "Lozère",
        10,
        [("lozere", 4000), ("occitanie", 3000), ("anct", 2000), ("enedis", 1000)],
        12,
    ),
]
SITES = [
    SiteSpec("Espace public numérique de Dole", ["bfc"]),
    SiteSpec("Médiathèque de Besançon — atelier numérique", ["bfc"]),
    SiteSpec("France Services de Montbéliard", ["bfc"]),
    SiteSpec("Fablab de Dijon", ["bfc"]),
    SiteSpec("Conseiller numérique du Creusot", ["bfc"]),
    SiteSpec("France Services de Mende", ["lozere"]),
    SiteSpec("Espace numérique de Marvejols", ["lozere"]),
    SiteSpec("Association Lien numérique Florac", ["lozere", "bfc"]),
]


def siret(rng: random.Random) -> str:
    siren = "".join(rng.choice("0123456789") for _ in range(8))
    siren += luhn.calc_check_digit(siren)
    base = siren + "".join(rng.choice("0123456789") for _ in range(4))
    return base + luhn.calc_check_digit(base)


def iban(rng: random.Random) -> str:
    account = "".join(rng.choice("0123456789") for _ in range(11))
    return IBAN.generate("FR", bank_code="3000400003", account_code=account).compact
