"""Small fixed vocabularies for needle keys (``adjective-noun``) and word values."""

from __future__ import annotations

__all__ = ["ADJECTIVES", "NOUNS", "VALUE_WORDS"]

ADJECTIVES: tuple[str, ...] = tuple("""
able ancient angry bitter brave breezy bright broad calm careful cheerful clever cloudy clumsy cold
crooked curious damp daring dusty eager early elegant empty fancy fierce fragile frozen gentle giant
glossy golden grumpy hollow humble hungry icy jolly kind lazy little lively lonely loud lucky mellow
merry misty modest narrow noble odd pale patient plain polite proud quick quiet rapid rare rough
royal rusty sandy shaggy sharp shiny silent silky sleepy slow smooth soft solid sour spicy steady
stormy sturdy sunny swift tame tender tidy tiny tough velvet vivid wary wild windy wise witty young
""".split())

NOUNS: tuple[str, ...] = tuple("""
anchor apron arrow badger banjo barrel basket beacon beetle bell bison blanket bottle bucket cabin
camel candle canoe carpet castle cedar chimney cobra comet compass cradle crater crystal dagger
dolphin donkey dragon drum eagle falcon feather ferry fiddle forest fossil fountain gecko glacier
goblet harbor harp helmet hornet island jaguar jelly kettle ladder lantern lemon lizard magnet
maple marble meadow mitten needle oyster paddle parrot pebble pepper piano pillow pumpkin quill
rabbit raven ribbon saddle salmon scarf shovel sparrow spider statue tiger trumpet tulip turtle
violin walnut wagon walrus whistle willow wizard
""".split())

# Values of ``niah_word``: disjoint from the key vocabularies, so a value never looks like a key.
VALUE_WORDS: tuple[str, ...] = tuple("""
abacus acorn alpaca amber anvil apricot atlas avocado azalea bagel bamboo banner biscuit blizzard
bonnet boulder bramble brooch buffalo cactus caramel cashew cello cherry cinnamon citadel clover
cobalt coconut copper coral cricket crocus cupcake cypress daisy dandelion denim dune ember emerald
fennel fjord flamingo galaxy garnet geyser ginger granite gravel hammock hazel hedgehog hibiscus
iguana indigo ivory jasmine juniper kayak kiwi koala lagoon lava lilac llama lobster lotus mango
meteor mint monsoon mosaic nectar nutmeg oasis olive onyx orchid otter panda papaya peacock pelican
penguin peony plum pretzel quartz quokka radish raisin reef saffron sapphire sequoia sorbet
spinach sprocket tamarind teapot thistle thunder tofu topaz truffle tundra turnip umbrella vanilla
volcano waffle yogurt zebra zephyr zinnia
""".split())
