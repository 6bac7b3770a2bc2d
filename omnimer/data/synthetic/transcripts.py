"""Indonesian transcripts: topic sentences, with emotion keywords from the lexicon when the text is
emotional (:func:`compose_transcript`).

Neutral templates and fillers contain no lexicon form (tests check every combination), so the
keywords found in a transcript are exactly the ones inserted: the aux_keywords target.

Used by the planning of ``omnimer synth`` (:mod:`~omnimer.data.synthetic.planning`).
"""

from __future__ import annotations

import re

import numpy as np

from omnimer.data.lexicon import find_keywords, load_lexicon

FILLERS: dict[str, tuple[str, ...]] = {
    "waktu": ("hari ini", "kemarin", "minggu lalu", "tadi pagi", "akhir pekan ini", "tahun lalu", "sore ini"),
    "orang": ("teman aku", "adik aku", "kakak aku", "ibu aku", "ayah aku", "tetangga aku", "sepupu aku"),
    "tempat": ("rumah", "kantor", "pasar", "kampus", "Bandung", "Surabaya", "Yogyakarta", "Medan"),
    "masakan": ("nasi goreng", "sayur asem", "ayam bakar", "soto ayam", "tumis kangkung", "rendang"),
    "bahan": ("bawang putih", "cabai merah", "tomat", "daun salam", "santan", "kecap manis"),
    "jumlah": ("dua siung", "tiga buah", "satu sendok makan", "setengah gelas", "secukupnya"),
    "menit": ("lima", "sepuluh", "lima belas", "dua puluh", "tiga puluh"),
    "menu": ("pengaturan", "profil", "tampilan", "akun", "riwayat"),
    "bagian": ("kedua", "berikutnya", "terakhir", "tambahan"),
    "fasilitas": ("puskesmas", "klinik terdekat", "rumah sakit", "apotek"),
    "isu": ("transportasi umum", "harga tiket", "jam kerja", "sekolah daring", "media sosial"),
    "barang": ("tas ransel", "sepatu lari", "kamera saku", "botol minum", "lampu meja"),
    "produk": ("pelembap", "primer", "tabir surya", "alas bedak"),
    "warna": ("cokelat muda", "merah bata", "emas", "abu-abu"),
    "artis": ("Raka Pratama", "Dinda Maharani", "grup Nada Kota", "Sari Wulandari"),
    "hari": ("hari Jumat", "awal bulan", "pekan depan", "akhir tahun"),
    "harga": ("lima puluh", "tujuh puluh lima", "seratus", "dua ratus"),
    "durasi": ("dua minggu", "satu bulan", "tiga bulan", "setengah tahun"),
    "penulis": ("Ahmad Fauzi", "Rina Kartika", "Budi Santoso", "Maya Anggraini"),
    "tahun": ("dua ribu lima belas", "dua ribu sembilan belas", "dua ribu dua puluh dua"),
    "jam": ("tujuh", "delapan", "setengah tujuh"),
}
# Neutral sentences per topic. They must contain no lexicon form, with any filler (tests check).
TOPIC_SENTENCES: dict[str, tuple[str, ...]] = {
    "Sharing": (
        "Jadi {waktu} aku mau cerita sedikit tentang pengalaman aku di {tempat}.",
        "Waktu itu aku lagi sama {orang} dan kita ngobrol soal banyak hal.",
        "Terus aku pikir, ya sudah, aku coba saja dulu.",
        "Ini ceritanya cukup panjang, jadi dengar sampai selesai ya.",
        "Kalian pernah mengalami hal yang mirip seperti ini?",
    ),
    "Family": (
        "Di keluarga kami, {orang} biasanya yang paling sering masak.",
        "Setiap {hari} kami kumpul bareng di {tempat}.",
        "Anak-anak sekarang sudah mulai sekolah lagi.",
        "Kami biasanya makan malam bersama sekitar jam {jam}.",
    ),
    "Tutorials": (
        "Langkah pertama, buka dulu aplikasinya lalu pilih menu {menu}.",
        "Setelah itu klik tombol simpan di pojok kanan atas.",
        "Pastikan pengaturannya sudah benar sebelum lanjut ke langkah berikutnya.",
        "Kalau sudah, kita lanjut ke bagian {bagian}.",
    ),
    "Health": (
        "Minum air putih minimal delapan gelas sehari itu penting.",
        "Kalau mau olahraga, mulai saja dari jalan kaki sekitar {menit} menit.",
        "Jangan lupa periksa tekanan darah secara rutin ke {fasilitas}.",
        "Tidur yang cukup juga membantu menjaga daya tahan tubuh.",
    ),
    "Opinion": (
        "Menurut aku, soal {isu} ini perlu dilihat dari dua sisi.",
        "Banyak orang punya pendapat yang berbeda tentang hal ini.",
        "Coba kita bahas satu per satu argumennya.",
        "Ini cuma pendapat pribadi aku ya, kalian boleh setuju atau tidak.",
    ),
    "Blogger": (
        "Halo semuanya, selamat datang kembali di channel aku.",
        "Di video kali ini aku mau bahas tentang {barang}.",
        "Jangan lupa like dan subscribe untuk video berikutnya.",
        "Sampai jumpa di video selanjutnya ya.",
    ),
    "Cooking": (
        "Hari ini aku mau masak {masakan} buat makan malam.",
        "Pertama, siapkan {bahan} sekitar {jumlah}.",
        "Masukkan {bahan} ke dalam wajan, lalu aduk sampai rata.",
        "Tunggu kira-kira {menit} menit sampai matang.",
    ),
    "Makeup": (
        "Pertama aku pakai {produk} dulu supaya kulitnya lembap.",
        "Setelah itu ratakan pakai spons secara perlahan.",
        "Untuk bagian mata, aku pakai warna {warna}.",
        "Terakhir, semprotkan setting spray supaya tahan lama.",
    ),
    "Celebrity": (
        "Kabarnya {artis} baru saja merilis lagu terbaru.",
        "Banyak penggemar yang menunggu konser mereka {hari}.",
        "Dia juga sempat tampil di acara televisi {waktu}.",
        "Film terbarunya akan tayang di bioskop mulai {hari}.",
    ),
    "Society": (
        "Warga di {tempat} mengadakan kerja bakti setiap akhir pekan.",
        "Pemerintah daerah sedang memperbaiki jalan di sekitar pasar.",
        "Harga bahan pokok di {tempat} masih cukup stabil.",
        "Banyak anak muda yang ikut kegiatan sosial di lingkungannya.",
    ),
    "Product": (
        "Produk ini harganya sekitar {harga} ribu rupiah.",
        "Kemasannya cukup kecil, jadi gampang dibawa ke mana-mana.",
        "Aku sudah pakai {barang} ini kurang lebih {durasi}.",
        "Kalian bisa beli di toko online atau di {tempat}.",
    ),
    "Book": (
        "Buku ini ditulis oleh {penulis} dan terbit tahun {tahun}.",
        "Ceritanya tentang seorang anak yang pindah ke {tempat}.",
        "Bukunya terdiri dari dua belas bab.",
        "Aku baca buku ini dalam waktu {durasi}.",
    ),
    "Politics": (
        "Pemilihan umum akan diadakan tahun depan.",
        "Setiap partai sudah mulai menyiapkan calonnya masing-masing.",
        "Debat kandidat akan disiarkan langsung di televisi.",
        "Menurut data terbaru, jumlah pemilih muda terus bertambah.",
    ),
}
# Frames that carry the emotion keywords; {kw} / {Kw} (capitalised) are the inserted lexicon forms.
KEYWORD_FRAMES_ONE: tuple[str, ...] = (
    "Jujur, aku merasa {kw} waktu itu.",
    "Pas {orang} cerita soal itu, rasanya {kw}.",
    "Aku tidak bisa bohong, {kw} sekali rasanya.",
    "{Kw}, itu yang aku rasakan sekarang.",
    "Rasanya campur aduk, pokoknya {kw}.",
)
KEYWORD_FRAMES_TWO: tuple[str, ...] = (
    "Aku merasa {kw} dan juga {kw2} waktu itu.",
    "{Kw}, {kw2}, semuanya jadi satu.",
    "Pokoknya {kw}, terus {kw2} juga.",
)


def _fill(template: str, rng: np.random.Generator, **given: str) -> str:
    slots = re.findall(r"\{(\w+)\}", template)
    values = dict(given)
    for slot in slots:
        if slot not in values and slot in FILLERS:
            options = FILLERS[slot]
            values[slot] = options[rng.integers(len(options))]
    return template.format(**values)


def _pick_keywords(emotion: str, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` forms of distinct lemmas of ``emotion``: the lemma itself half the time (most natural)."""
    entries = load_lexicon()[emotion]
    chosen = rng.choice(len(entries), size=min(count, len(entries)), replace=False)
    forms = []
    for i in chosen:
        lemma, all_forms = entries[int(i)]
        forms.append(lemma if rng.random() < 0.5 else all_forms[rng.integers(len(all_forms))])
    return forms


def compose_transcript(topic: str, emotion: str, rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """An Indonesian transcript on ``topic`` expressing ``emotion`` in words; returns (text, keywords).

    Neutral text is one or two topic sentences with no lexicon word. Emotional text is a topic
    sentence plus a sentence with one or two keywords of ``emotion``; the keywords returned are
    exactly what :func:`find_keywords` finds in the text.
    """
    sentences = TOPIC_SENTENCES[topic]
    if emotion == "netral":
        count = 1 + int(rng.random() < 0.5)
        picked = rng.choice(len(sentences), size=count, replace=False)
        return " ".join(_fill(sentences[int(i)], rng) for i in picked), ()
    # A keyword next to a frame word could form a longer lexicon phrase; redraw in that rare case.
    for _ in range(50):
        keywords = _pick_keywords(emotion, 1 + int(rng.random() < 0.4), rng)
        frames = KEYWORD_FRAMES_TWO if len(keywords) == 2 else KEYWORD_FRAMES_ONE
        frame = frames[rng.integers(len(frames))]
        values = {"kw": keywords[0], "Kw": keywords[0][:1].upper() + keywords[0][1:]}
        if len(keywords) == 2:
            values["kw2"] = keywords[1]
        emotional = _fill(frame, rng, **values)
        neutral = _fill(sentences[rng.integers(len(sentences))], rng)
        text = f"{neutral} {emotional}" if rng.random() < 0.5 else f"{emotional} {neutral}"
        if find_keywords(text) == keywords:
            return text, tuple(keywords)
    raise RuntimeError(f"could not compose a transcript for {topic!r} / {emotion!r} whose keywords match")
