"""Dev-only: writes the example's policy documents in knowledge/ (a PDF, a DOCX and an HTML page).

The generated files are committed; run this only to change their text:
    python examples/acme-support/make_documents.py
The PDF is written by hand (a few objects, standard Helvetica, a real text layer) because no PDF library is
a Tuneloom dependency; the DOCX uses python-docx, which data preparation already needs to read DOCX files.
"""

from __future__ import annotations

import datetime
import html
import textwrap
from pathlib import Path

import docx

HERE = Path(__file__).resolve().parent / "knowledge"
NOTICE = (
    "Fictional example. Acme Home Ltd, its products, prices and policies are invented for this example data set; "
    "any resemblance to a real company is coincidental."
)

CARE_PLUS = (
    "Acme Care+ protection plan: terms in brief (2026)",
    [
        (
            "What Acme Care+ is",
            [
                "Acme Care+ is an optional protection plan for Acme Home devices. It adds accidental damage cover and "
                "extends the standard warranty by 2 extra years for every device registered on the plan.",
                "Acme Care+ costs £4.99 a month or £49 a year per home, and one plan covers up to 10 devices in the same home. "
                "It is sold in the UK and Ireland only.",
            ],
        ),
        (
            "Joining the plan",
            [
                "A device can join Acme Care+ within 60 days of its delivery date. Devices bought second-hand, or "
                "more than 60 days ago, cannot join.",
                "Customers join in the app under Account > Care+ > Add devices.",
            ],
        ),
        (
            "Making a claim",
            [
                "Start a claim in the app under Account > Care+ > Start a claim and add a photo of the damage.",
                "Each accidental damage claim has an excess fee of £15, and a home can make at most 3 claims in any 12 months.",
                "Once a claim is approved, the replacement device is sent by express courier within 2 working days.",
            ],
        ),
        (
            "What is not covered",
            [
                "Acme Care+ does not cover cosmetic scratches that do not affect how the device works, loss or theft, "
                "or damage on purpose.",
            ],
        ),
        (
            "Cancelling",
            [
                "Monthly plans can be cancelled at any time and end at the end of the month. A yearly plan cancelled in "
                "its first 30 days is refunded in full; after that, customers get a refund for each full month left.",
            ],
        ),
    ],
)

TRADE_IN = (
    "Trade-in and recycling programme",
    [
        (
            "Trade-in credit",
            [
                "Customers in the UK can trade in an old camera, video doorbell or thermostat of any brand when they "
                "buy from Acme Home. The credit is £20 for a camera, £30 for a video doorbell and £40 for a thermostat.",
                "Up to 4 devices can be traded in per order. The credit comes as a voucher code that is valid for 6 months.",
            ],
        ),
        (
            "Sending a device",
            [
                "A free prepaid Royal Mail label is in the app under Account > Orders > Trade in. Traded-in devices go "
                "to our recycling centre in Sheffield.",
                "The device must power on to earn credit. The voucher is emailed within 10 working days of the device "
                "arriving in Sheffield.",
            ],
        ),
        (
            "Your data",
            [
                "Customers should factory reset a device before sending it. We wipe every device again with certified "
                "software and email a data-wipe certificate.",
            ],
        ),
        (
            "Recycling without credit",
            [
                "Any Acme Home device can be sent for free recycling with the same prepaid label, even when it no longer "
                "works. Trade-in is not available in the EU; EU customers can recycle devices at their local WEEE "
                "collection point.",
            ],
        ),
    ],
)

INSTALLERS = (
    "Acme Pro Installers: home installation of cameras and doorbells",
    [
        (
            "Prices",
            [
                "An Acme Pro Installer fits cameras and the Doorbell Pro for £59 for the first device and £25 for each "
                "extra device on the same visit. The Acme Thermo has its own professional installation service.",
            ],
        ),
        (
            "Booking a visit",
            [
                "Book in the app under Account > Services > Book an installer, at least 3 working days ahead. Visits "
                "are Monday to Saturday, 8:00 to 18:00, in 2-hour time slots.",
                "Rescheduling is free up to 24 hours before the visit; later changes cost £20.",
            ],
        ),
        (
            "What the installer does",
            [
                "The installer routes up to 2 metres of cable and drills into brick or wood. Installers do not drill "
                "into tiles or glass.",
                "Every installer carries an ID card with a 6-digit badge number, which customers can check in the app "
                "before letting them in.",
                "Installation work has a 12-month workmanship guarantee.",
            ],
        ),
        (
            "Where installers work",
            [
                "Acme Pro Installers cover England, Scotland and Wales, except postcodes starting HS, IV, KW and ZE "
                "(the Scottish Highlands and islands). The service is not available in Northern Ireland or the EU.",
            ],
        ),
    ],
)


def _pdf_lines(title: str, sections: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(font, text) lines: F2 bold headings, F1 body wrapped at 90 characters, blank lines between blocks."""
    lines = [("F2", title), ("F1", ""), ("F1", NOTICE[:90]), ("F1", NOTICE[90:]), ("F1", "")]
    for heading, paragraphs in sections:
        lines.append(("F2", heading))
        for p in paragraphs:
            lines += [("F1", line) for line in textwrap.wrap(p, 90, break_on_hyphens=False)] + [("F1", "")]
    return lines


def _pdf_escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")


def write_pdf(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    """A one-page A4 PDF with a text layer (WinAnsi-encoded Helvetica, so '£' survives)."""
    stream = b"BT 14 TL 56 790 Td\n"
    for font, text in _pdf_lines(title, sections):
        stream += b"/" + font.encode() + (b" 12 Tf (" if font == "F2" else b" 10 Tf (") + _pdf_escape(text) + b") Tj T*\n"
    stream += b"ET"
    fonts = "/Font << /F1 5 0 R /F2 6 0 R >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << {fonts} >> /Contents 4 0 R >>".encode(),
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def write_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.created = document.core_properties.modified = datetime.datetime(2026, 1, 5)
    document.add_heading(title, level=1)
    document.add_paragraph(NOTICE)
    for heading, paragraphs in sections:
        document.add_heading(heading, level=2)
        for p in paragraphs:
            document.add_paragraph(p)
    document.save(str(path))


def write_html(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    body = "".join(f"<h2>{html.escape(h)}</h2>\n" + "".join(f"<p>{html.escape(p)}</p>\n" for p in ps) for h, ps in sections)
    path.write_text(
        f'<!DOCTYPE html>\n<html lang="en-GB"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f'<body>\n<nav><a href="/">Acme Home</a> · <a href="/help">Help centre</a></nav>\n<main>\n'
        f"<h1>{html.escape(title)}</h1>\n<p><em>{html.escape(NOTICE)}</em></p>\n{body}</main>\n"
        f"<footer>© Acme Home Ltd · Leeds</footer>\n</body></html>\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    write_pdf(HERE / "care-plus.pdf", *CARE_PLUS)
    write_docx(HERE / "trade-in-and-recycling.docx", *TRADE_IN)
    write_html(HERE / "pro-installers.html", *INSTALLERS)
