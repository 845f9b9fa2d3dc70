package data

// The built-in vocabulary of the synthetic stories (and of the retrieval
// task's filler). Each list is ordered so that its first k words are a
// sensible smaller vocabulary (Stories.Words). No word contains a digit, so
// numbers in the synthetic tasks occur only where a task puts them.
var (
	wordNames = []string{"Lily", "Tom", "Mia", "Ben", "Anna", "Max", "Sue", "Sam", "Lucy", "Jack",
		"Emma", "Leo", "Zoe", "Tim", "Kate", "Bob", "Amy", "Dan", "Eva", "Joe", "Nina", "Paul", "Rosa", "Finn"}
	wordAnimals = []string{"cat", "dog", "bird", "fox", "bunny", "bear", "frog", "duck", "mouse", "owl",
		"fish", "pig", "cow", "horse", "lion", "turtle", "goat", "sheep", "deer", "bee"}
	wordObjects = []string{"ball", "box", "kite", "hat", "book", "cake", "toy", "boat", "flower", "stone",
		"cup", "drum", "shell", "leaf", "key", "map", "bell", "rope", "apple", "star"}
	wordPlaces = []string{"park", "garden", "forest", "house", "river", "hill", "beach", "school", "farm", "town",
		"lake", "field", "cave", "shop", "road", "tree"}
	wordAdjectives = []string{"little", "big", "kind", "small", "funny", "brave", "quiet", "shy", "old", "young",
		"busy", "gentle", "clever", "silly", "sleepy", "fast"}
	wordColors   = []string{"red", "blue", "green", "yellow", "pink", "white", "brown", "orange", "purple", "black"}
	wordFeelings = []string{"happy", "sad", "proud", "tired", "glad", "scared", "excited", "calm", "surprised", "sorry"}
	wordVerbs    = [][2]string{{"play", "played"}, {"run", "ran"}, {"jump", "jumped"}, {"sing", "sang"},
		{"swim", "swam"}, {"read", "read"}, {"dance", "danced"}, {"walk", "walked"}, {"draw", "drew"},
		{"climb", "climbed"}, {"hide", "hid"}, {"look", "looked"}}
	wordQuotes = []string{"Let's play together!", "That is so pretty!", "Can I try?", "Thank you!",
		"Look at this!", "I am sorry.", "Do you want to be my friend?", "What a nice day!",
		"Where are you going?", "Please help me."}
)

// vocab is the word lists cut to k words each (k <= 0: whole lists).
type vocab struct {
	names, animals, objects, places, adjectives, colors, feelings, quotes []string
	verbs                                                                 [][2]string
}

func newVocab(k int) vocab {
	cut := func(xs []string) []string {
		if k > 0 && k < len(xs) {
			return xs[:max(k, 2)]
		}
		return xs
	}
	verbs := wordVerbs
	if k > 0 && k < len(verbs) {
		verbs = verbs[:max(k, 2)]
	}
	return vocab{cut(wordNames), cut(wordAnimals), cut(wordObjects), cut(wordPlaces), cut(wordAdjectives),
		cut(wordColors), cut(wordFeelings), cut(wordQuotes), verbs}
}
