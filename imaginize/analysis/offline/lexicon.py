"""Word lists for the offline analyzer.

Small, hand-picked English vocabularies: what makes a passage *look* like something (colour,
light, material, weather, setting), what marks a proper name as a person, place, creature or
item, and the words a sentence may start with that are not names. Everything is lower case
except where noted. Most lookups go through `imaginize.analysis.offline.text.stem_variants`, so
regular plurals (and, for verb lists, -ing/-ed endings) need not be listed.
"""

from __future__ import annotations


def words(text: str) -> frozenset[str]:
    """A word list written as one whitespace-separated string."""
    return frozenset(text.split())


# --- visual vocabulary, used to score passages and to pick descriptive phrases ------------

COLOURS = words(
    """
    red scarlet crimson vermilion ruby rose rosy pink blush coral orange amber apricot yellow
    golden gold gilt gilded lemon saffron green emerald olive jade verdant blue azure sapphire
    navy cobalt indigo violet purple lilac lavender mauve brown tan tawny chestnut auburn
    bronze copper russet rust black ebony jet raven inky sable white ivory snowy milky pearl
    pearly silver silvery grey gray ashen ashy pale colourless colorless livid dun cream
    creamy buff ochre sallow ruddy florid swarthy tanned sunburned sunburnt freckled fair
    blonde blond dark-haired white-haired grey-haired rainbow
    """
)

LIGHT = words(
    """
    light lights lit bright brightly brilliant glow glowing glowed gleam gleaming glimmer
    glitter glittering glittered shine shining shone shimmer shimmering sparkle sparkling
    flash flashing flicker flickering blaze blazing radiant luminous lamp lamplight lantern
    candle candlelight torch torchlight firelight fire flame flames sun sunlight sunshine
    sunbeam sunset sunrise moon moonlight moonlit star starlight stars dawn daybreak dusk
    twilight lightning glare beam beams rays illuminated
    dark darkness darkened gloom gloomy shadow shadows shadowy shade shaded dim dimly murky
    black-dark pitch night midnight obscure
    """
)

# Cloth: what a dress is made of ("cream-coloured chiffon").
FABRICS = words(
    """
    silk satin velvet lace linen wool cotton chiffon muslin tweed flannel flannels crêpe
    crepe serge calico gingham taffeta brocade organdie organza cambric worsted corduroy
    denim chintz gauze tulle homespun broadcloth fustian
    """
)

MATERIALS = FABRICS | words(
    """
    glass crystal marble stone granite brick wooden wood oak pine timber iron steel brass
    copper tin lead silk satin velvet lace linen wool woollen cotton leather fur feather
    feathers paper parchment porcelain china clay mud dust sand ice ivory bone gold silver
    polished rusty crumbling ruined tattered ragged
    """
)

# Shapes and sizes: common in any prose, so they count for less than materials.
SHAPES = words(
    """
    round square circular oval oblong curved crooked jagged pointed sharp flat smooth rough tall
    narrow broad wide long low high deep vast huge enormous tiny little small great giant
    towering massive heavy thin thick hollow twisted tangled
    """
)

MATERIALS_SHAPES = MATERIALS | SHAPES

WEATHER = words(
    """
    rain raining rainy drizzle storm stormy thunder lightning wind windy breeze gust gale
    snow snowy snowing sleet hail frost frosty fog foggy mist misty haze hazy cloud clouds
    cloudy sky skies heat hot sultry humid cold chill chilly icy freezing damp wet dew
    tempest blizzard
    """
)

# Places a scene can be set in.
PLACE_NOUNS = words(
    """
    room hall chamber corridor passage staircase kitchen parlour parlor drawing-room
    library study cellar attic tower castle palace cottage house mansion hut cabin church
    chapel cathedral inn tavern shop street road lane alley bridge square market garden
    gardens lawn courtyard yard field fields meadow forest wood woods grove orchard hill
    hills mountain mountains valley cliff cliffs cave shore beach sea ocean lake pool river
    stream brook waterfall harbour harbor dock pier island bay coast desert plain moor marsh
    swamp village town city ruins tunnel pit ship deck boat lighthouse station platform
    terrace porch veranda balcony ballroom glacier bank riverbank sky causeway quay wharf
    steeple spire roofs chasm chasms avenue buildings building palaces villages fleet
    harbour-wall jetty lane path track clearing glade
    """
)

# Fixtures of a setting: they place a scene ("by the door") without being the place.
FIXTURES = words(
    """
    door doorway window windows stairs stair gate gates wall walls fence hedge tree trees
    rock rocks table fireplace hearth ice horizon
    """
)

SETTING_NOUNS = PLACE_NOUNS | FIXTURES

INDOOR_SETTINGS = words(
    """
    room hall chamber corridor passage staircase stairs kitchen parlour parlor drawing-room
    library study cellar attic ballroom fireplace hearth table cottage hut cabin inn tavern
    shop church chapel cathedral
    """
)

ACTION_VERBS = words(
    """
    run ran running rush rushed dash dashed leap leapt leaped jump jumped fall fell falling
    fly flew flying climb climbed crawl crawled swim swam float floated dive dived plunge
    plunged stagger staggered stumble stumbled rose rise rising sink sank spring sprang
    burst fight fought strike struck seize seized grab grabbed throw threw hurl hurled
    pull pulled drag dragged push pushed lift lifted wave waved point pointed kneel knelt
    crouch crouched dance danced gallop galloped ride rode drive drove sail sailed chase
    chased flee fled scream screamed shout shouted embrace embraced kiss kissed weep wept
    tremble trembled shake shook clutch clutched wrap wrapped tear tore smash smashed
    explode exploded crash crashed hurry hurried stride strode march marched
    """
)

BODY = words(
    """
    face faces eyes eye hair beard moustache mustache whiskers lips mouth teeth nose cheeks
    cheek brow forehead chin neck shoulders hands hand fingers arms skin complexion figure
    features head ears tail paws claws wings fur mane horns feet foot legs leg knees
    shoulder lap snout muzzle beak tusks antlers hooves flanks haunches fins
    """
)

# The parts of BODY a close-up shows.
FACE = words(
    """
    face faces eyes eye hair beard moustache mustache whiskers lips mouth teeth nose cheeks
    cheek brow forehead chin ears complexion features
    """
)

CLOTHING = words(
    """
    coat cloak cape gown dress frock skirt shirt waistcoat jacket trousers breeches suit
    hat cap bonnet hood veil scarf shawl gloves glove boots shoes slippers apron uniform
    robe robes tie collar ribbon ribbons crown jewels necklace pearls ring rings spectacles
    greatcoat overcoat raincoat oilskin petticoat bodice stockings sandals trousers
    glasses tunic armour armor bib
    """
)

APPEARANCE_ADJECTIVES = words(
    """
    tall short stout fat plump thin slender lean gaunt slim broad burly stocky small little
    tiny large huge big great giant old young elderly aged ancient youthful pretty handsome
    beautiful lovely ugly hideous plain grim stern gentle haggard wrinkled weathered
    bearded bald curly curled straight wild shaggy sleek neat elegant shabby ragged
    hunchbacked lame muscular delicate frail pale dark fair grey gray white red black
    golden blue green brown pink yellow silver mossy furry feathered scaly bushy woolly
    hairy spotted striped freckled floury dusty muddy sooty grimy squat blond blonde
    lanky wiry portly corpulent dumpy swarthy sallow ruddy rosy tanned sunburnt stooped
    """
)

VISUAL_ADJECTIVES = COLOURS | APPEARANCE_ADJECTIVES | MATERIALS_SHAPES

# Light sources and times of day, mapped to the lighting an illustrator would paint.
LIGHTING_PHRASES: dict[str, str] = {
    "moon": "moonlight",
    "moonlight": "moonlight",
    "moonlit": "moonlight",
    "star": "starlight",
    "starlight": "starlight",
    "stars": "starlight",
    "candle": "warm candlelight",
    "candlelight": "warm candlelight",
    "lamp": "lamplight",
    "lamplight": "lamplight",
    "lantern": "lantern light",
    "torch": "flickering torchlight",
    "torchlight": "flickering torchlight",
    "fire": "firelight",
    "firelight": "firelight",
    "flame": "firelight",
    "flames": "firelight",
    "hearth": "firelight",
    "lightning": "flashes of lightning",
    "sunset": "low golden sunset light",
    "sunrise": "pale sunrise light",
    "dawn": "pale dawn light",
    "daybreak": "pale dawn light",
    "dusk": "dusky twilight",
    "twilight": "dusky twilight",
    "evening": "warm evening light",
    "sun": "bright sunlight",
    "sunlight": "bright sunlight",
    "sunshine": "bright sunlight",
    "sunbeam": "shafts of sunlight",
    "noon": "harsh midday sun",
    "morning": "fresh morning light",
    "afternoon": "soft afternoon light",
    "night": "night, deep shadows",
    "midnight": "night, deep shadows",
    "darkness": "near darkness, deep shadows",
    "dark": "dim light, deep shadows",
    "gloom": "gloomy half-light",
    "shadow": "strong shadows",
    "shadows": "strong shadows",
    "fog": "diffuse foggy light",
    "mist": "diffuse misty light",
    "storm": "stormy overcast light",
    "rain": "grey rainy light",
    "snow": "cold white winter light",
    "glow": "a soft glow",
    "glitter": "glittering highlights",
    "gleam": "gleaming highlights",
}

# Moods and the words that suggest them; ties go to the earlier mood in this order.
MOODS: dict[str, frozenset[str]] = {
    "ominous": words(
        """dread horror horrible terror terrible fear feared afraid ghastly dreadful monster
        fiend corpse death dead grave tomb sinister despair wretched hideous menace
        menacing doom"""
    ),
    "tense": words(
        """suddenly sudden scream screamed shout shouted rushed ran fled chase chased blood
        fight fought struck seized danger alarm alarmed panic trembling trembled violent
        violently crash angry anger rage furious shot gun"""
    ),
    "melancholy": words(
        """tears weep wept wept sorrow sorrowful grief grieve sad sadly sadness lonely alone
        mourn mourning misery miserable melancholy weary sigh sighed lost farewell"""
    ),
    "joyful": words(
        """laugh laughed laughing laughter joy joyful delight delighted merry music dance
        danced dancing party gay cheerful smile smiled smiling happy happiness glad bright
        festive gaiety sparkling champagne"""
    ),
    "romantic": words(
        """love loved lover kiss kissed heart tender tenderly embrace embraced beloved
        passion passionate longing adore"""
    ),
    "whimsical": words(
        """curious curiouser strange queer odd funny puzzled wonder wondered wonderland
        nonsense riddle grin grinning mad absurd peculiar"""
    ),
    "serene": words(
        """quiet quietly calm calmly gentle gently soft softly still peaceful peace serene
        warm pleasant lovely sweet murmur murmured drowsy sleepy"""
    ),
    "majestic": words(
        """vast immense sublime magnificent grand grandeur mighty majestic towering
        enormous glorious splendid splendour"""
    ),
}

# Lighting words that hold for a whole stretch of text, not just the sentence they are in.
TIME_OF_DAY = words(
    "dawn daybreak sunrise morning noon afternoon evening sunset dusk twilight night midnight"
)

DEFAULT_MOOD = "quiet, observational"


# --- proper names -----------------------------------------------------------------------

# Honorifics and titles (case as written). Gender helps pick he/she descriptions; None = any.
HONORIFICS: dict[str, str | None] = {
    "Mr": "m",
    "Mister": "m",
    "Sir": "m",
    "Lord": "m",
    "King": "m",
    "Prince": "m",
    "Duke": "m",
    "Count": "m",
    "Baron": "m",
    "Master": "m",
    "Father": "m",
    "Uncle": "m",
    "Brother": "m",
    "Monsieur": "m",
    "M": "m",
    "Knave": "m",
    "Herr": "m",
    "Signor": "m",
    "Don": "m",
    "Mrs": "f",
    "Miss": "f",
    "Ms": "f",
    "Lady": "f",
    "Madam": "f",
    "Madame": "f",
    "Mademoiselle": "f",
    "Queen": "f",
    "Princess": "f",
    "Duchess": "f",
    "Countess": "f",
    "Baroness": "f",
    "Mistress": "f",
    "Mother": "f",
    "Aunt": "f",
    "Sister": "f",
    "Frau": "f",
    "Fräulein": "f",
    "Dr": None,
    "Doctor": None,
    "Professor": None,
    "Prof": None,
    "Captain": None,
    "Capt": None,
    "Colonel": None,
    "Col": None,
    "General": None,
    "Major": None,
    "Lieutenant": None,
    "Sergeant": None,
    "Admiral": None,
    "Judge": None,
    "Reverend": None,
    "Rev": None,
    "Saint": None,
    "St": None,
    "Emperor": "m",
    "Empress": "f",
}

# Honorifics that never name anyone on their own ("Mr", "Dr"): dropped when alone.
BARE_HONORIFICS = words(
    """
    M Mr Mister Mrs Miss Ms Madam Madame Mademoiselle Monsieur Herr Frau Fräulein Signor
    Don Dr Prof Capt Col Rev St Saint Sir Lord Lady Master Mistress Father Mother
    Brother Sister Uncle Aunt
    """
)

# English pet forms of given names: "Lizzy" and "Eliza" are Elizabeth when the text also
# says Elizabeth nearby (`names._diminutive_links`). Lower case: pet form -> full names.
DIMINUTIVES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("lizzy", "lizzie", "liz", "eliza", "beth", "betsy", "bess", "bessie", "betty"),
        ("elizabeth",),
    ),
    **dict.fromkeys(
        ("kitty", "kate", "katie", "kathy", "cathy", "kit"), ("catherine", "katherine")
    ),
    **dict.fromkeys(("bob", "bobby", "rob", "robin", "bert"), ("robert",)),
    **dict.fromkeys(("bill", "billy", "will", "willy", "willie"), ("william",)),
    **dict.fromkeys(("jim", "jimmy", "jamie", "jem"), ("james",)),
    **dict.fromkeys(("tom", "tommy"), ("thomas",)),
    **dict.fromkeys(("dick", "dicky", "rick"), ("richard",)),
    **dict.fromkeys(("harry", "hal"), ("henry", "harold")),
    **dict.fromkeys(("ned", "ted", "teddy", "eddie", "eddy"), ("edward", "edmund")),
    **dict.fromkeys(("jack", "johnny", "jacky"), ("john",)),
    **dict.fromkeys(("peggy", "maggie", "meg", "madge", "margery"), ("margaret",)),
    **dict.fromkeys(("polly", "molly", "mamie", "mally"), ("mary",)),
    **dict.fromkeys(("sally", "sadie"), ("sarah", "sara")),
    **dict.fromkeys(("nell", "nelly", "nellie"), ("ellen", "eleanor", "helen")),
    **dict.fromkeys(("sue", "susie", "suky"), ("susan", "susanna", "susannah")),
    **dict.fromkeys(("annie", "nancy", "nan", "nanny"), ("anne", "ann", "anna")),
    **dict.fromkeys(("fanny",), ("frances",)),
    **dict.fromkeys(("dolly",), ("dorothy", "dorothea")),
    **dict.fromkeys(("charley", "charlie", "chas"), ("charles",)),
    **dict.fromkeys(("lottie", "lotty"), ("charlotte",)),
    **dict.fromkeys(("fred", "freddy", "freddie"), ("frederick", "frederic")),
    **dict.fromkeys(("sam", "sammy"), ("samuel",)),
    **dict.fromkeys(("ben", "benny"), ("benjamin",)),
    **dict.fromkeys(("joe", "joey"), ("joseph",)),
    **dict.fromkeys(("nick", "nicky"), ("nicholas",)),
    **dict.fromkeys(("tony",), ("anthony", "antony")),
    **dict.fromkeys(("andy",), ("andrew",)),
    **dict.fromkeys(("dan", "danny"), ("daniel",)),
    **dict.fromkeys(("pete",), ("peter",)),
    **dict.fromkeys(("phil",), ("philip", "phillip")),
    **dict.fromkeys(("jenny", "jennie"), ("jane", "janet", "jennifer")),
    **dict.fromkeys(("sophy",), ("sophia", "sophie")),
    **dict.fromkeys(("georgie",), ("george", "georgiana", "georgina")),
    **dict.fromkeys(("natasha",), ("natalya", "natalia", "natalie")),
}

# Titles that tell apart the people of one family before a surname: a man, a married woman,
# an unmarried one ("Mr. Bennet", "Mrs. Bennet", "Miss Bennet" are three people).
TITLE_CLASSES: dict[str, str] = {
    **dict.fromkeys(("Mr", "Mister", "Monsieur", "M", "Herr", "Signor", "Señor"), "m"),
    **dict.fromkeys(("Mrs", "Madame", "Mme", "Frau", "Señora", "Signora"), "mrs"),
    **dict.fromkeys(("Miss", "Mademoiselle", "Mlle", "Fräulein", "Señorita", "Signorina"), "miss"),
}

# Titles that say the person is a grown-up man or woman.
ADULT_TITLES = words(
    """
    Mr Mister Mrs Sir Lord Lady Madam Madame Monsieur M Herr Frau Signor Don Ms
    """
)

# Words written with a full stop that does not end the sentence (case as written).
ABBREVIATIONS = words(
    """
    Mr Mrs Ms Dr St Mt Jr Sr Capt Col Gen Lt Sgt Prof Rev Hon Messrs Mme Mlle Esq No vs
    etc viz cf Co Ltd Inc Ave Rd
    """
)

# Name connectors allowed between capitalised words: "Queen of Hearts", "Leonardo da Vinci".
NAME_CONNECTORS = words(
    """
    of de da di du la le van von der del
    """
)

# Capitalised words that are never (part of) a name, even mid-sentence (lower-cased).
NOT_NAMES = words(
    """
    i i'm i'd i'll i've me my mine myself we us our ours he him his she her hers it its they
    them their theirs you your yours thou thee thy this that these those the a an and or but
    nor for so yet if then than when where why how what who whom whose which while as at by
    in on of to from with without into onto upon oh ah ay aye o yes no nay not well now here
    there alas hallo hello hullo good goodbye farewell please thank thanks dear all any
    some every each both either neither one two three four five six seven eight nine ten
    first last next after before during since until till though although because perhaps
    maybe only just even still again also very quite rather too much many more most few less
    least such there's that's it's let let's do does did don't didn't can can't could
    couldn't will won't would wouldn't shall should shouldn't must might have has had was
    were is are be been being am go come see look say tell never ever always sometimes often
    soon once twice nothing something everything anything nobody somebody everybody anybody
    no-one none other another same own whatever whoever however therefore thus hence indeed
    besides meanwhile otherwise instead presently suddenly certainly surely really truly
    yesterday today tomorrow tonight mamma papa mama mum mom dad daddy mummy ok okay pray
    hurrah hurray bravo ha haha hm hmm humph
    ii iii iv vi vii viii ix xi xii xiii xiv xv xvi xvii xviii xix xx
    """
)

# Articles and determiners of languages that capitalise nouns (German, also Dutch and
# Danish articles), with German preposition-article contractions ("im", "zum").
ARTICLES = words(
    """
    der die das den dem des ein eine einen einem einer eines kein keine keinen keinem keiner
    keines mein meine meinen meinem meiner sein seine seinen seinem seiner ihr ihre ihren
    ihrem ihrer unser unsere unseren unserem euer eure dieser diese dieses diesem diesen
    jeder jede jedes jedem jeden jener jene welche welcher welches zum zur im am vom beim
    ins ans aufs durchs fürs übers het een de
    """
)

# Capitalised words that are no name on their own but may start or end one ("March Hare").
NOT_ALONE = words(
    """
    monday tuesday wednesday thursday friday saturday sunday january february march april
    may june july august september october november december chapter book volume part letter
    section note footnote contents preface introduction epilogue prologue appendix index
    english french german italian spanish dutch russian american british irish scotch
    scottish swiss greek latin roman european christian catholic protestant jewish god
    finnish swedish norwegian danish polish austrian hungarian turkish arabian arab persian
    indian chinese japanese african egyptian belgian portuguese welsh canadian mexican
    americans englishmen frenchmen germans
    heaven heavens hell christmas easter sire v x the end north south east west northern
    southern eastern western majesty highness lordship ladyship honour honor excellency
    grace new old
    """
)

# Verbs of speech: "said Alice", "Alice replied".
SPEECH_VERBS = words(
    """
    said says say replied replies answered answers asked asks cried cries exclaimed
    shouted whispered muttered murmured added continued repeated remarked observed began
    went thought called screamed sobbed sighed laughed insisted suggested declared
    interrupted explained returned growled snapped yelled
    """
)

# Verbs that, right after a name, suggest a person (or a talking animal).
PERSON_VERBS = words(
    """
    was had looked turned smiled laughed nodded shook went came walked stood sat knew
    thought felt seemed told took gave saw heard wanted tried began stopped got made
    wore wrote spoke answered hesitated sighed frowned glanced stared whispered kissed
    """
)

# Verbs whose -ed form is no visible action ("Alice wondered").
UNSEEN_VERBS = words(
    """
    seemed wanted wished wondered remembered considered decided supposed believed expected
    noticed hoped added answered asked replied continued repeated remarked explained
    returned learned learnt liked loved hated needed used happened interrupted observed
    suggested insisted declared agreed promised pretended called listened waited tried
    guessed fancied imagined feared doubted recollected perceived resolved determined
    reflected desired resolved intended believed hesitated named christened dubbed
    """
)

# Verbs of visible doing that are not in ACTION_VERBS.
VISIBLE_VERBS = words(
    """
    looked turned smiled laughed nodded shook went came walked stood sat took gave wore
    kissed glanced stared frowned waved pointed held opened closed lay leaned bent knelt
    poured sang played carried reached threw watched drank ate looked caught put lit broke
    hung drew blew flung swung spread swept slid crept bit hid shut tore bore burst
    """
)

# People known by what they do: a scene's subject may be "the cook" or "three gardeners".
OCCUPATIONS = words(
    """
    cook cooks gardener gardeners footman footmen butler butlers servant servants maid maids
    nurse doctor sailor sailors soldier soldiers guard guards officer officers policeman
    policemen waiter waiters driver chauffeur coachman postman farmer farmers fisherman
    fishermen shepherd hunter hunters merchant merchants priest monk nun clerk porter
    musician musicians dancer dancers singer players crew executioner jury jurors judge
    """
)

# Words that open a comparison: "like a wild beast", "as if to a vigil", "as though".
SIMILE_OPENERS = words("like")
# Before "like", these make it the verb: "I like", "would like", "did not like".
LIKE_AS_VERB = words(
    """
    i you we they would should could did do does not don't didn't to really always
    """
)
# Before a setting noun, these make it no place: "it was plain that", "quite still".
NOT_A_PLACE_BEFORE = words(
    """
    was is were are be been being seemed seems appeared looked felt became quite very so too
    more most perfectly not rather pretty
    """
)

PRONOUNS_M = words("he him his himself")
PRONOUNS_F = words("she her hers herself")
# Pronouns that pick up the subject of the sentence before ("her" and "him" rarely do).
SUBJECT_PRONOUNS = {
    "he": "m",
    "his": "m",
    "himself": "m",
    "she": "f",
    "herself": "f",
    "its": "n",
    "itself": "n",
}

# Place evidence: "in Geneva", "to West Egg"; weights say how much each preposition tells.
PLACE_PREPOSITIONS: dict[str, float] = {
    "in": 1.5,
    "into": 1.2,
    "near": 1.0,
    "through": 1.0,
    "across": 1.0,
    "towards": 1.0,
    "toward": 1.0,
    "from": 0.6,
    "at": 0.5,
    "to": 0.4,
    "on": 0.5,
    "along": 0.8,
    "reach": 1.0,
    "reached": 1.0,
    "left": 0.5,
    "visit": 0.6,
    "visited": 0.6,
}

# Words inside a name that make it a place (case as written).
PLACE_TYPES = words(
    """
    Street St Road Rd Lane Avenue Ave Square Place Court Row Terrace Crescent Way Bridge
    Town City Village Hamlet County Shire Kingdom Empire Republic Land Lands Island Isle
    Islands Bay Sound Sea Ocean Lake Loch River Creek Brook Falls Harbour Harbor Port
    Cape Hill Hills Mount Mountain Mountains Valley Vale Glen Forest Wood Woods Heath
    Moor Marsh Fen Plain Plains Desert Park Garden Gardens Castle Palace Tower Towers
    Abbey Cathedral Church Chapel Lighthouse Light Rock Rocks Bakery Shop Store Orchard
    Causeway House Hall Manor Court Cottage Farm Inn Tavern Hotel Station Academy
    College University School Prison Gaol Alps Coast Gulf Strait Canyon Peninsula
    Province Colony Quarter Market Wharf Quay Pier Dock Docks Mill Mine Grange
    """
)

# First words that make a name a place: "Mount Doom", "Lake Geneva", "Mont Blanc".
PLACE_PREFIXES = words(
    """
    Mount Mt Mont Monte Lake Loch Isle Cape Fort Port Glen Sierra Rio Lac Val Bois
    """
)

# Animal and beast nouns (lower case) for creatures: "the dog Rufus", "the White Rabbit".
CREATURES = words(
    """
    animal beast creature monster fiend demon daemon dæmon dragon wyrm serpent snake
    worm dog puppy hound wolf fox cat kitten lion tiger leopard bear horse pony mare
    stallion donkey mule ass cow bull ox calf pig hog boar sheep lamb goat deer stag
    rabbit hare mouse mice rat dormouse squirrel hedgehog badger otter mole bat bird
    owl eagle hawk falcon raven crow rook magpie dove pigeon parrot duck eaglet duckling
    goose swan hen chicken cock rooster dodo lory flamingo crane heron gull fish
    whale shark crab lobster turtle tortoise frog toad lizard crocodile alligator insect
    caterpillar butterfly moth beetle bee wasp spider ant fly gnat griffin gryphon
    unicorn phoenix troll ogre goblin giant elf dwarf fairy pixie imp ghost
    phantom spectre specter vampire werewolf mermaid centaur sphinx hydra kraken
    panther jaguar cheetah elephant camel monkey ape gorilla zebra giraffe walrus porpoise
    dolphin eel salmon trout oyster sparrow nightingale cuckoo vulture buffalo bison moose
    elk reindeer llama
    """
)

# Names for a monstrous being that a book mostly gives to one and the same creature.
EPITHETS = words("monster fiend demon daemon dæmon devil")

# Verbs that suggest an animal when they follow a name: "Flint trotted over it lightly".
CREATURE_VERBS = words(
    """
    trotted hopped scampered scurried wagged barked growled snarled purred mewed meowed
    howled yelped whined sniffed pawed pounced bounded slithered hissed squeaked chirped
    chirruped croaked neighed whinnied grazed nuzzled fluttered flapped perched crept
    """
)

# Vehicles and vessels, which readers picture like objects.
VEHICLES = words(
    """
    boat ship schooner sloop yacht barge ferry steamer skiff dinghy vessel car automobile
    coupé coupe carriage coach cart wagon train sled sledge airship balloon
    """
)

# Parts and people of a vessel: "the deck of the Pequod" names a ship.
VESSEL_PARTS = words(
    """
    deck decks hull mast masts mainmast bow bows stern helm rigging sails keel bulwarks
    forecastle quarter-deck cabin cabins crew hold gangway
    """
)
# What ships do: "the Pequod sailed", "the Rachel anchored".
VESSEL_VERBS = words("sailed anchored docked steamed foundered sank capsized heeled moored")

# Items worth tracking when they recur with "the": "the brass key", "the map".
ITEMS = words(
    """
    key keys map chart letter locket ring amulet talisman medallion necklace
    pendant brooch crown sceptre scepter sword dagger knife blade axe spear bow arrow
    shield gun pistol revolver rifle lantern lamp candle torch journal diary
    notebook scroll manuscript portrait painting photograph mirror looking-glass
    clock watch compass telescope spyglass cup goblet chalice bottle flask vial potion
    jar box chest casket coffer trunk purse wallet coin coins jewel gem diamond pearl
    pearls emerald ruby bracelet fan gloves glove hat cap umbrella cane wand rod
    flute violin fiddle harp drum bell whistle mushroom cake tarts tart car automobile
    coupé coupe roadster carriage cart wagon boat raft canoe sled sledge
    """
)

# Everyday concrete nouns beyond the lists above: what a size word may sensibly describe.
EVERYDAY_THINGS = words(
    """
    chair chairs bed beds sofa couch cushion curtain curtains carpet rug shelf shelves
    cupboard cupboards drawer jar jug pot kettle plate plates dish bowl basket bag sack
    barrel bucket ladder rope chain wheel cart flower flowers rose roses leaf leaves grass
    branch branches bush bushes hedge stone stones pebble log logs fire candle lamp cloth
    blanket pillow teapot teacup cup cups saucer tray bench stool desk column columns pillar
    arch statue fountain chimney roof steps step floor ceiling water waves wave sand dust
    smoke cloud clouds hole rabbit-hole crowd
    """
)

# Common words for people: appositives like "Tom, a sturdy straw-haired man".
PERSON_NOUNS = words(
    """
    man men woman women girl girls boy boys child children gentleman gentlemen lady
    ladies fellow youth maid maiden lad lass king queen prince princess duke duchess
    knight soldier sailor captain servant baby infant person figure stranger
    """
)
