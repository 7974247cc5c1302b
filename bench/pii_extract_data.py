#!/usr/bin/env python3
"""A PII extraction set for `bantam tune lora` and `bantam eval --task extract`,
made from the sentence templates and fake identities that ship in the
`presidio-evaluator` wheel on PyPI (MIT licence; Microsoft Presidio's evaluator):

    pip download presidio-evaluator==0.3.2 --no-deps -d /tmp/wheels
    python3 bench/pii_extract_data.py /tmp/wheels/presidio_evaluator-0.3.2-py3-none-any.whl /tmp/pii

Each template (a customer-support message, a biography line, a letter …) is
filled with a fake person, company, address, phone number, e-mail and card
number; the answer lists the personal data found in it, in the order it
appears, under the fields of `schema.json`. Templates are split 70/30 between
training and test (seeded), so the test sentences are ones the model never saw
in training, and so are the identities (different rows of the identity table).
Templates that spell an address out piece by piece (building number, street,
post code) are left out: their pieces have no single agreed answer.

Writes train.jsonl ({"input", "output"}: the output is the JSON answer as text,
laid out as Bantam's constrained JSON is), test.jsonl ({"input", "expected"}),
schema.json and a summary on stdout.
"""

import csv
import io
import json
import random
import re
import sys
import zipfile
from pathlib import Path

SEED = 13
TRAIN_PER_TEMPLATE = 6
TEST_PER_TEMPLATE = 4

FIELDS = ["people", "organizations", "locations", "emails", "phone_numbers", "card_numbers"]
SCHEMA = {
    "type": "object",
    "properties": {f: {"type": "array", "items": {"type": "string"}} for f in FIELDS},
    "required": FIELDS,
    "additionalProperties": False,
}

# Placeholder → the field its value is reported under (None: filled, not PII here).
FIELD_OF = {
    "person": "people", "name": "people", "first_name": "people", "last_name": "people",
    "name_female": "people", "name_male": "people", "first_name_male": "people",
    "first_name_female": "people", "first_name_nonbinary": "people",
    "last_name_male": "people", "last_name_female": "people",
    "organization": "organizations",
    "city": "locations", "country": "locations", "address": "locations",
    "email": "emails",
    "phone_number": "phone_numbers",
    "credit_card_number": "card_numbers", "iban": "card_numbers",
}
SKIPPED = {"building_number", "street_name", "secondary_address", "postcode", "zipcode",
           "state_abbr"}


def luhn_card(rng):
    digits = [rng.choice([4, 5])] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return rng.choice([s, " ".join(s[i:i + 4] for i in range(0, 16, 4))])


def iban(rng):
    country = rng.choice(["DE", "FR", "GB", "NL", "ES"])
    body = "".join(str(rng.randrange(10)) for _ in range(18))
    return f"{country}{rng.randrange(10, 99)} " + " ".join(body[i:i + 4] for i in range(0, 18, 4))


def value(kind, rec, rng, orgs, nations):
    g, s = rec["GivenName"], rec["Surname"]
    simple = {
        "person": f"{g} {s}", "name": f"{g} {s}", "first_name": g, "last_name": s,
        "name_female": f"{g} {s}", "name_male": f"{g} {s}", "first_name_male": g,
        "first_name_female": g, "first_name_nonbinary": g, "last_name_male": s,
        "last_name_female": s,
        "organization": rng.choice(orgs),
        "city": rec["City"], "country": rec["CountryFull"],
        "address": f"{rec['StreetAddress']}, {rec['City']} {rec['ZipCode']}",
        "email": rec["EmailAddress"],
        "phone_number": f"+{rec['TelephoneCountryCode']} {rec['TelephoneNumber']}",
        "credit_card_number": luhn_card(rng), "iban": iban(rng),
        "age": rec["Age"], "year": str(rng.randrange(1950, 2021)), "job": rec["Occupation"],
        "url": "https://www." + rec["Domain"], "date_of_birth": rec["Birthday"],
        "date_time": f"{rng.randrange(1, 29)}/{rng.randrange(1, 13)}/{rng.randrange(2000, 2024)}",
        "day_of_week": rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        "prefix": rng.choice(["Mr.", "Ms.", "Dr."]), "prefix_male": "Mr.",
        "prefix_female": rng.choice(["Mrs.", "Ms."]),
        "ssn": f"{rng.randrange(100, 999)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
        "ip_address": ".".join(str(rng.randrange(1, 255)) for _ in range(4)),
        "us_driver_license": f"D{rng.randrange(1000000, 9999999)}",
    }
    if kind in simple:
        return simple[kind]
    n = rng.choice(nations)
    return {"nationality": n["nationality"], "nation_woman": n["woman"], "nation_man": n["man"],
            "nation_plural": n["plural"]}.get(kind, rng.choice(orgs))


def fill(template, records, rng, orgs, nations):
    """The filled text and its answer (values in order of appearance)."""
    text, answer = "", {f: [] for f in FIELDS}
    pos = 0
    for m in re.finditer(r"{{\s*(\w+)\s*}}", template):
        text += template[pos:m.start()]
        kind = m.group(1)
        v = value(kind, rng.choice(records), rng, orgs, nations).strip()
        text += v
        if FIELD_OF.get(kind):
            answer[FIELD_OF[kind]].append(v)
        pos = m.end()
    text += template[pos:]
    return text.strip(), answer


def main():
    wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    raw = "presidio_evaluator/data_generator/raw_data/"
    with zipfile.ZipFile(wheel) as z:
        read = lambda n: z.read(raw + n).decode("utf-8-sig")
        templates = [t.replace("\\n", "\n") for t in read("templates.txt").splitlines() if t.strip()]
        people = list(csv.DictReader(io.StringIO(read("FakeNameGenerator.com_3000.csv"))))
        orgs = [r["organization"] for r in csv.DictReader(io.StringIO(read("companies_and_organizations.csv")))]
        nations = list(csv.DictReader(io.StringIO(read("nationalities.csv"))))
    kinds = lambda t: set(re.findall(r"{{\s*(\w+)\s*}}", t))
    usable = sorted({t for t in templates if not kinds(t) & SKIPPED})
    rng = random.Random(SEED)
    rng.shuffle(usable)
    cut = int(len(usable) * 0.7)
    split = {"train": (usable[:cut], people[:2000], orgs[: len(orgs) // 2], TRAIN_PER_TEMPLATE),
             "test": (usable[cut:], people[2000:], orgs[len(orgs) // 2:], TEST_PER_TEMPLATE)}
    for name, (temps, recs, org_list, per) in split.items():
        rows = []
        for t in temps:
            for _ in range(per if kinds(t) else 1):
                text, answer = fill(t, recs, rng, org_list, nations)
                if name == "train":
                    rows.append({"input": text, "output": json.dumps(answer, ensure_ascii=False)})
                else:
                    rows.append({"input": text, "expected": answer})
        rng.shuffle(rows)
        with open(out / f"{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        found = sum(len(v) for r in rows for v in json.loads(r["output"]).values()) if name == "train" \
            else sum(len(v) for r in rows for v in r["expected"].values())
        print(f"{name}: {len(temps)} templates, {len(rows)} rows, {found} values to extract")
    (out / "schema.json").write_text(json.dumps(SCHEMA, indent=2) + "\n")
    print(f"left out {len(set(templates)) - len(usable)} address-block templates; wrote {out}")


if __name__ == "__main__":
    main()
