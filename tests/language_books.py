# ruff: noqa: RUF001  (the books are in other scripts on purpose)
"""Small books in other languages, in verse and with dash dialogue, for the offline analyzer.

Original text written for these tests (CC0). Each builder writes an EPUB with `build_epub`
and returns its path; `BOOKS` names them for benchmarks/languages_check.py. `DIALOGUE`
gives, per book, the share of its paragraphs written as dialogue, as built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tests.epubs import build_epub


def _html(paragraphs: Sequence[str]) -> str:
    return "".join(f"<p>{p}</p>" for p in paragraphs)


SPANISH = (
    (
        "Capítulo primero",
        [
            "La casa de Tomás Herrera estaba al final del camino, entre dos olivos viejos y un "
            "muro de piedra gris que el viento había pulido durante cien años.",
            "—¿Adónde vas? —preguntó Lucía desde la puerta.",
            "—Al puerto —dijo él—. Vuelvo antes de la noche.",
            "Tomás bajó por la cuesta con la cesta vacía al hombro. Abajo, las barcas rojas y "
            "azules dormían sobre la arena mojada, y un perro negro corría entre las redes.",
            "—Hola —dijo el viejo pescador sin levantar la vista.",
            "En el muelle olía a sal y a brea. Las gaviotas gritaban sobre los tejados del "
            "mercado, y una mujer vendía sardinas plateadas en una mesa de madera.",
            "—¿Cuánto cuestan hoy? —preguntó Tomás.",
            "—Lo mismo que ayer, hijo.",
            "Lucía esperaba en la ventana con una lámpara de aceite encendida cuando el sol se "
            "hundió detrás de las montañas y el valle se llenó de sombras largas.",
        ],
    ),
    (
        "Capítulo segundo",
        [
            "Aquella noche llovió sobre el pueblo. El agua bajaba por la calle empedrada y "
            "brillaba bajo el único farol de la plaza, junto a la fuente de piedra.",
            "—No puedes salir con esta tormenta —dijo Lucía.",
            "—Tengo que ver la barca —respondió Tomás—. El mar está muy alto.",
            "Se puso el abrigo de lana y salió. En la playa, las olas golpeaban las rocas negras "
            "y la espuma blanca volaba por el aire como nieve.",
            "—¡Tomás! —gritó alguien desde el muelle.",
            "Era el viejo Ramón, con un farol en la mano y el sombrero empapado. Juntos "
            "arrastraron la barca roja hasta la arena seca, lejos del agua.",
            "—Gracias, Ramón.",
            "Cuando volvió a casa, Lucía había encendido el fuego de la cocina y el pan caliente "
            "esperaba sobre la mesa, junto a un jarro de vino oscuro.",
        ],
    ),
)

GERMAN = (
    (
        "Erstes Kapitel",
        [
            "Als Anna Keller am Morgen das Fenster öffnete, lag der Schnee schon hoch auf den "
            "Dächern der Stadt, und die Glocken der alten Kirche schlugen sieben.",
            "»Kommst du heute zum Markt?« fragte ihr Bruder Paul von der Treppe.",
            "»Nein«, sagte sie. »Ich muss den Brief zu Ende schreiben.«",
            "Sie setzte sich an den Tisch am Fenster. Die Tinte war kalt, die Feder kratzte "
            "auf dem Papier, und draußen zog ein Pferdeschlitten mit roten Decken vorbei.",
            "Paul zog den grauen Mantel an und ging hinaus. Auf dem Platz standen die Händler "
            "zwischen ihren Körben, und der Atem der Pferde stieg weiß in die Luft.",
            "»Guten Morgen, Herr Bauer«, sagte Paul zu dem alten Bäcker.",
            "Anna schrieb bis zum Mittag. Dann legte sie den Brief in die Schublade, nahm die "
            "Laterne vom Haken und stieg die dunkle Treppe hinunter in den Keller.",
        ],
    ),
    (
        "Zweites Kapitel",
        [
            "Am Abend kam Paul mit einem Korb voller Äpfel zurück. Die Küche war warm, das "
            "Feuer knisterte im Ofen, und Anna stand mit einer Kerze am Fenster.",
            "»Hast du den Brief geschrieben?« fragte er.",
            "»Ja«, sagte Anna. »Morgen bringe ich ihn zur Post.«",
            "In der Nacht heulte der Wind um das Haus. Anna lag wach und hörte, wie die "
            "Fensterläden klapperten und der Schnee leise gegen das Glas fiel.",
            "Am nächsten Morgen ging sie mit Paul durch die weißen Gassen zur Post, vorbei an "
            "der Brücke über den gefrorenen Fluss und den dunklen Mauern der Mühle.",
        ],
    ),
)

RUSSIAN = (
    (
        "Глава первая",
        [
            "Дом Ивана Петровича стоял на краю деревни, у самого леса, где зимой выли волки "
            "и снег лежал до самых окон.",
            "— Куда ты идёшь? — спросила Маша, не поднимая глаз от шитья.",
            "— В лес, за дровами, — ответил Иван. — Скоро вернусь.",
            "Он надел тулуп, взял топор и вышел на мороз. Солнце висело низко над соснами, "
            "и тени деревьев лежали на снегу длинными синими полосами.",
            "— Осторожнее там, — сказала Маша ему вслед.",
            "В лесу было тихо. Иван рубил сухую берёзу, и щепки летели на снег, а над "
            "головой кружила чёрная ворона.",
        ],
    ),
    (
        "Глава вторая",
        [
            "Вечером Маша зажгла лампу и поставила самовар. За окном мела метель, и в печи "
            "трещали берёзовые дрова.",
            "— Где же он? — шептала она, глядя в тёмное окно.",
            "Иван пришёл поздно, весь в снегу, с тяжёлой вязанкой дров на спине. Борода его "
            "побелела от инея, а щёки горели от мороза.",
            "— Вот и я, — сказал он и улыбнулся.",
        ],
    ),
)

FRENCH = (
    (
        "Chapitre premier",
        [
            "La maison de Jeanne Morel se dressait au bord de la rivière, sous trois grands "
            "saules dont les branches touchaient l’eau verte.",
            "— Bonjour, dit-il en ôtant son chapeau.",
            "— Bonjour, monsieur Lenoir, répondit Jeanne. Vous venez pour le bateau ?",
            "Ils descendirent ensemble vers le ponton. La barque bleue flottait entre les "
            "roseaux, et une libellule se posa sur la rame mouillée.",
            "« Il faudra la repeindre avant l’été », pensa Jeanne.",
            "Le soir, le ciel devint rouge au-dessus des collines, et les cloches du village "
            "sonnèrent pendant que les vaches rentraient par le chemin de terre.",
        ],
    ),
    (
        "Chapitre deux",
        [
            "Le lendemain, il pleuvait sur la vallée. Jeanne alluma une bougie dans la cuisine "
            "et posa la cafetière sur le poêle noir.",
            "— Vous êtes matinal, dit-elle quand Lenoir frappa à la porte.",
            "— La rivière monte, répondit-il. Il faut attacher la barque.",
            "Sous la pluie, ils tirèrent la barque bleue sur l’herbe, près du vieux moulin dont "
            "la roue tournait lentement dans l’eau grise.",
        ],
    ),
)

JAPANESE = (
    (
        "第一章",
        [
            "山の上の小さな村に、花子という娘が住んでいた。家の前には古い桜の木があり、春になる"
            "と白い花びらが風に舞った。",
            "「どこへ行くの？」と母が聞いた。",
            "「川まで水をくみに行きます」と花子は答えた。",
            "花子は木の桶を持って坂を下りた。川の水は冷たく澄んでいて、赤い魚が石の間を泳いで"
            "いた。",
            "向こう岸では、年老いた漁師が網を直していた。夕日が水面を金色に染めていた。",
            "「気をつけて帰りなさい」と漁師は言った。",
            "村に戻ると、家々の窓に灯りがともり、台所から味噌汁の匂いがしていた。",
        ],
    ),
    (
        "第二章",
        [
            "その夜、村に大雪が降った。屋根も道も白く埋まり、月の光が雪の上で青く光っていた。",
            "「寒いね」と花子は言った。",
            "囲炉裏の火が赤く燃え、鉄の鍋から湯気が立ちのぼっていた。父は黙って薪をくべた。",
            "朝になると、花子は雪の中を歩いて神社へ向かった。赤い鳥居の上に雪が厚く積もっていた。",
        ],
    ),
)

CHINESE = (
    (
        "第一章",
        [
            "在山脚下的小镇上，住着一个叫李明的年轻铁匠。他的铺子在河边，门口挂着一盏旧灯笼。",
            "“你去哪儿？”妹妹问。",
            "“去集市买铁，”李明说，“天黑前回来。”",
            "集市上人来人往，卖菜的老人坐在竹篮旁边，红色的辣椒堆得像小山一样。",
            "李明买了铁，又给妹妹买了一把绿色的油纸伞。",
            "傍晚，夕阳照在河面上，水波闪着金光，几只白鹅慢慢游过石桥。",
        ],
    ),
    (
        "第二章",
        [
            "夜里下起了大雨。雨水顺着屋檐流下来，打在院子里的石板上。",
            "“明天还要去吗？”妹妹问。",
            "铺子里炉火通红，李明举起铁锤，一下一下地敲着烧红的铁块，火星四处飞溅。",
            "第二天早上，雨停了，远处的山上挂着一道彩虹。",
        ],
    ),
)

ARABIC = (
    (
        "الفصل الأول",
        [
            "كان بيت سليم في آخر الشارع، قرب البحر، وكانت نوافذه الزرقاء تطل على الميناء "
            "القديم حيث ترسو قوارب الصيادين.",
            "«إلى أين تذهب؟» سألت أمه من المطبخ.",
            "«إلى السوق» قال سليم. «سأعود قبل المغرب.»",
            "مشى سليم بين الدكاكين الضيقة. كانت رائحة القهوة والهيل تملأ الهواء، والتجار "
            "يعرضون السجاد الأحمر والأواني النحاسية اللامعة.",
            "عند الغروب صعد إلى السطح، فرأى الشمس تغرق في البحر والنوارس تحلق فوق المآذن.",
        ],
    ),
    (
        "الفصل الثاني",
        [
            "في الليل هبت ريح قوية من البحر، وأضاءت الأم فانوسًا صغيرًا ووضعته على الطاولة الخشبية.",
            "«هل أغلقت الباب؟» سألت.",
            "جلس سليم قرب النافذة يراقب الأمواج البيضاء وهي تضرب الصخور السوداء تحت ضوء القمر.",
        ],
    ),
)

# An English poem: stanzas as <p> with <br/> between lines, and one of a line per <div>.
VERSE_1 = [
    [
        "The lantern swung above the quay",
        "where fishing boats lay dark and still,",
        "and Margaret in her yellow shawl",
        "went slowly up the windy hill.",
    ],
    [
        "Below her lay the silver bay,",
        "the chimneys and the leaning spire,",
        "the nets hung out along the wall,",
        "the kitchens glowing with their fire.",
    ],
    [
        "She did not turn to see the town,",
        "she did not hear the harbour bell,",
        "but climbed into the falling snow",
        "beside the ruined chapel well.",
    ],
]
VERSE_2 = [
    [
        "At dawn the fishermen came home",
        "with salt upon their beards and hands,",
        "and found her footprints in the frost",
        "that wandered out across the sands.",
    ],
    [
        "They followed them along the shore",
        "to where the grey rocks met the tide,",
        "and there a little wooden boat",
        "lay empty, rocking on its side.",
    ],
    [
        "The gulls cried over Margaret's boat,",
        "the bells rang out across the foam,",
        "and every lantern on the quay",
        "burned all that winter, lighting home.",
    ],
]


def _stanzas_br(stanzas: list[list[str]]) -> str:
    return "".join("<p>" + "<br/>".join(lines) + "</p>" for lines in stanzas)


def _stanzas_div(stanzas: list[list[str]]) -> str:
    return "".join(
        '<div class="linegroup">' + "".join(f"<div>{x}</div>" for x in lines) + "</div>"
        for lines in stanzas
    )


def _prose_book(
    path: Path, chapters: Sequence[tuple[str, list[str]]], language: str, title: str
) -> Path:
    docs = [(t, _html(ps)) for t, ps in chapters]
    return build_epub(path, docs, language=language, title=title, author="Test Author")


def spanish(path: Path, language: str = "es") -> Path:
    return _prose_book(path, SPANISH, language, "La barca roja")


def german(path: Path, language: str = "de") -> Path:
    return _prose_book(path, GERMAN, language, "Der Brief")


def russian(path: Path, language: str = "ru") -> Path:
    return _prose_book(path, RUSSIAN, language, "Зима")


def french(path: Path, language: str = "fr") -> Path:
    return _prose_book(path, FRENCH, language, "La barque bleue")


def japanese(path: Path, language: str = "ja") -> Path:
    return _prose_book(path, JAPANESE, language, "山の村")


def chinese(path: Path, language: str = "zh") -> Path:
    return _prose_book(path, CHINESE, language, "铁匠")


def arabic(path: Path, language: str = "ar") -> Path:
    return _prose_book(path, ARABIC, language, "البحر")


def english_verse(path: Path, language: str = "en") -> Path:
    docs = [("I. The Quay", _stanzas_br(VERSE_1)), ("II. The Shore", _stanzas_div(VERSE_2))]
    return build_epub(path, docs, language=language, title="The Lantern", author="Test Author")


BOOKS: dict[str, Callable[[Path], Path]] = {
    "spanish": spanish,
    "german": german,
    "russian": russian,
    "french": french,
    "japanese": japanese,
    "chinese": chinese,
    "arabic": arabic,
    "english-verse": english_verse,
}


def _dialogue_share(chapters: Sequence[tuple[str, list[str]]], openers: str) -> float:
    paras = [p for _, ps in chapters for p in ps]
    return sum(1 for p in paras if p[0] in openers) / len(paras)


# Share of paragraphs that open with speech (dash, guillemet or quotation mark), as built.
DIALOGUE = {
    "spanish": _dialogue_share(SPANISH, "—"),
    "german": _dialogue_share(GERMAN, "»"),
    "russian": _dialogue_share(RUSSIAN, "—"),
    "french": _dialogue_share(FRENCH, "—«"),
    "japanese": _dialogue_share(JAPANESE, "「"),
    "chinese": _dialogue_share(CHINESE, "“"),
    "arabic": _dialogue_share(ARABIC, "«"),
    "english-verse": 0.0,
}
