"""The junk real web crawls hold, generated offline for the demo corpus and the benches.

Each generator is `(rng, n) -> n texts`, deterministic for a seeded `random.Random`. The kinds
(`JUNK_KINDS`) follow what production pre-filters and quality classifiers are built against:
keyword/SEO spam (keyword lists, and keyword-stuffed articles), repeated cookie and legal boilerplate, navigation menus, tables of numbers,
random characters, lorem ipsum, base64/hex blobs and templated product pages. Some of them fail
the heuristic rules (repetition, stop words, short lines); templated product pages are written
and SEO articles are written to look like prose and often pass them, as in real crawls, so a model-based ranking has work
left to do. Near-duplicates of clean documents (`near_duplicates`) need the clean texts.
"""

from __future__ import annotations

import base64
import random
import re
import string
from collections.abc import Callable

BOILERPLATE = [
    "Click here to subscribe to our newsletter! Best deals, best prices, best offers every day. ",
    "Cookie policy: we use cookies to improve your experience. Accept all cookies to continue. ",
    "Home | About | Contact | Privacy | Terms | Login | Register | Cart | Checkout | Help | ",
    "Buy now and save 50%! Limited time offer! Free shipping on all orders over $25! ",
    "By using this site you agree to our Terms of Service and Privacy Policy. All rights "
    "reserved. No part of this website may be reproduced without prior written permission. ",
    "We and our partners store and access information on your device, such as cookies, and "
    "process personal data for personalised ads and content, ad measurement and insights. ",
]
KEYWORDS = ["shoes", "loans", "casino", "watches", "insurance", "vpn", "diet pills", "hotels",
            "phones", "mattress", "crypto", "backlinks", "essay writing", "car rental"]
KEYWORD_PATTERNS = ["best {k}", "cheap {k}", "{k} online", "buy {k}", "{k} near me",
                    "{k} reviews", "top {k} {y}", "discount {k}", "{k} deals", "{k} sale",
                    "free {k}", "{k} coupon code", "official {k} store", "{k} for sale"]
MENU_ITEMS = ["Home", "About Us", "Products", "Services", "Blog", "News", "Contact", "Careers",
              "Login", "Sign up", "Cart", "Wishlist", "FAQ", "Support", "Sitemap", "Shop",
              "Categories", "Deals", "Gift Cards", "Track Order", "Returns", "Privacy"]
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
         "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure "
         "in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint "
         "occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est "
         "laborum").split()
BRANDS = ["Acme", "Zentro", "Novalux", "Peakform", "Brightline", "Kordia", "Velora", "Maxim"]
PRODUCTS = ["wireless headphones", "running shoes", "coffee maker", "office chair", "smart watch",
            "backpack", "desk lamp", "blender", "air purifier", "phone case", "yoga mat"]
ADJECTIVES = ["premium", "durable", "lightweight", "stylish", "comfortable", "innovative",
              "high quality", "ergonomic", "versatile", "modern", "compact", "reliable"]
PRODUCT_SENTENCES = [
    "The {brand} {product} is the perfect choice for anyone who wants a {adj} and {adj2} design.",
    "Made with {adj} materials, this {product} will last for years and is easy to use.",
    "Order the {brand} {product} today and get free shipping on all orders over ${free}.",
    "Customers love the {adj} feel and the {adj2} finish of the {product}.",
    "This item is in stock and ships within {days} business days from our warehouse.",
    "Rated {stars} out of 5 stars by {reviews} verified buyers.",
    "Add the {product} to your cart now, because this offer ends soon.",
    "Compare with similar items and you will see that the {brand} {product} is the best value.",
    "Frequently bought together: {product} and {other}.",
    "Return it within {days} days if you are not satisfied, no questions asked.",
]

SEO_SENTENCES = [
    "If you are looking for the best {k}, you have come to the right place.",
    "Our {k} are the cheapest {k} you can find online in {y}.",
    "Many people ask us where to buy {k} and the answer is always the same: here.",
    "We compared hundreds of {k} so that you do not have to, and these are the best {k}.",
    "Cheap {k} do not have to be bad {k}, and our reviews of {k} prove it.",
    "Click the link below to get the lowest price on {k} today.",
    "Do not wait, because the best deals on {k} sell out fast.",
    "Read our guide to {k} and find out why thousands of customers trust us.",
    "The top {k} of {y} are all listed on this page with prices and discounts.",
    "With our exclusive coupon you can save up to {p}% on {k} right now.",
    "Everyone deserves great {k}, which is why we offer free delivery on all {k}.",
    "Our experts have tested every one of these {k} for quality and value.",
]


def seo_article(rng: random.Random, n: int) -> list[str]:
    """Keyword-stuffed "articles" written as prose (spun content): they pass most rules."""
    out = []
    for _ in range(n):
        keyword = rng.choice(KEYWORDS)
        paragraphs = []
        for _ in range(rng.randint(2, 5)):
            sentences = rng.sample(SEO_SENTENCES, rng.randint(3, 6))
            paragraphs.append(" ".join(
                s.format(k=keyword, y=rng.randint(2015, 2026), p=rng.randint(10, 80))
                for s in sentences))
        out.append(f"Best {keyword.title()} {rng.randint(2015, 2026)}: Top Picks and Deals\n\n"
                   + "\n\n".join(paragraphs))
    return out


def keyword_spam(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        keyword = rng.choice(KEYWORDS)
        phrases = [rng.choice(KEYWORD_PATTERNS).format(k=keyword, y=rng.randint(2015, 2026))
                   for _ in range(rng.randint(30, 150))]
        out.append(", ".join(phrases).capitalize() + ".")
    return out


def boilerplate(rng: random.Random, n: int) -> list[str]:
    return [f"Page {i}. " + rng.choice(BOILERPLATE) * rng.randint(4, 20) for i in range(n)]


def navigation(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(15, 60)):
            if rng.random() < 0.3:
                lines.append(" > ".join(rng.sample(MENU_ITEMS, rng.randint(2, 4))))
            elif rng.random() < 0.5:
                lines.append(" | ".join(rng.sample(MENU_ITEMS, rng.randint(3, 8))))
            else:
                lines.append(rng.choice(MENU_ITEMS))
        out.append("\n".join(lines))
    return out


def number_table(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        columns = rng.randint(3, 7)
        rows = [" | ".join(["Year"] + [f"Q{c}" for c in range(1, columns)])]
        for year in range(rng.randint(1990, 2010), rng.randint(2012, 2026)):
            cells = [f"{rng.uniform(-50, 5000):,.{rng.randint(0, 2)}f}" for _ in range(columns - 1)]
            rows.append(" | ".join([str(year)] + cells))
        out.append("\n".join(rows))
    return out


def random_chars(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(300, 1500))) for _ in range(n)]


def lorem_ipsum(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(LOREM) for _ in range(rng.randint(6, 18))).capitalize()
                     + "." for _ in range(rng.randint(5, 30))]
        out.append("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + " ".join(sentences))
    return out


def base64_hex(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        blob = rng.randbytes(rng.randint(200, 1200))
        if rng.random() < 0.5:
            text = base64.b64encode(blob).decode("ascii")
            out.append("\n".join(text[i : i + 76] for i in range(0, len(text), 76)))
        else:
            text = blob.hex()
            out.append("\n".join(" ".join(text[j : j + 8] for j in range(i, min(i + 64, len(text)), 8))
                                 for i in range(0, len(text), 64)))
    return out


def product_page(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        brand, product = rng.choice(BRANDS), rng.choice(PRODUCTS)
        title = f"{brand} {product.title()} {rng.choice(string.ascii_uppercase)}{rng.randint(10, 999)}"
        body = []
        for _ in range(rng.randint(6, 16)):
            adj, adj2 = rng.sample(ADJECTIVES, 2)
            body.append(rng.choice(PRODUCT_SENTENCES).format(
                brand=brand, product=product, adj=adj, adj2=adj2, free=rng.choice([25, 35, 50]),
                days=rng.randint(2, 30), stars=round(rng.uniform(3.5, 5), 1),
                reviews=rng.randint(12, 9000), other=rng.choice(PRODUCTS)))
        price = f"Price: ${rng.randint(9, 499)}.{rng.randint(0, 99):02d}. In stock."
        out.append(f"{title}\n\n{price}\n\n" + " ".join(body))
    return out


def mirrors(rng: random.Random, originals: list[str], n: int) -> list[tuple[int, str]]:
    """(index of the original, copy) pairs: copies of clean texts with about one word in fifty
    replaced (mirrors, reposts), made from the longer originals (80 words or more) when there
    are any, as mirrors copy pages. Line breaks and spacing stay the original's, as a mirror
    keeps the page's layout."""
    out = []
    long_enough = [i for i, t in enumerate(originals) if len(t.split()) >= 80] or \
        list(range(len(originals)))
    for i in range(n):
        source = rng.choice(long_enough)
        # Words at even positions, the whitespace between them at odd ones.
        parts = re.split(r"(\s+)", originals[source])
        words = [j for j in range(0, len(parts), 2) if parts[j]]
        for _ in range(max(1, len(words) // 50)):
            parts[rng.choice(words)] = rng.choice(["the", "a", "data", "value"])
        out.append((source, "".join(parts) + f" (mirror {i})"))
    return out


def near_duplicates(rng: random.Random, originals: list[str], n: int) -> list[str]:
    """The copies of `mirrors`, without their originals' indices."""
    return [text for _, text in mirrors(rng, originals, n)]


JUNK_GENERATORS: dict[str, Callable[[random.Random, int], list[str]]] = {
    "keyword_spam": keyword_spam,
    "seo_article": seo_article,
    "boilerplate": boilerplate,
    "navigation": navigation,
    "number_table": number_table,
    "random_chars": random_chars,
    "lorem_ipsum": lorem_ipsum,
    "base64_hex": base64_hex,
    "product_page": product_page,
}
JUNK_KINDS = (*JUNK_GENERATORS, "near_duplicate")


def junk_documents(rng: random.Random, counts: dict[str, int]) -> list[tuple[str, str]]:
    """(kind, text) pairs: `counts[kind]` texts of each generated kind (near-duplicates aside)."""
    unknown = sorted(set(counts) - set(JUNK_GENERATORS))
    if unknown:
        raise ValueError(f"unknown junk kinds {unknown}; known: {sorted(JUNK_GENERATORS)}")
    return [(kind, text) for kind, count in counts.items()
            for text in JUNK_GENERATORS[kind](rng, count)]
