package tokenizer_test

import (
	"fmt"
	"log"
	"slices"

	"github.com/dsv32/dsv32/tokenizer"
)

func ExampleLoad() {
	b, err := tokenizer.Load("../testdata/tokenizer/deepseek_v32.json.gz")
	if err != nil {
		log.Fatal(err)
	}
	ids := b.Encode("<｜User｜>Hello world<｜Assistant｜><think>")
	fmt.Println(ids)
	fmt.Println(b.Decode(ids))
	fmt.Println(b.EncodeOrdinary("<think>"))
	// Output:
	// [128803 19923 2058 128804 128798]
	// <｜User｜>Hello world<｜Assistant｜><think>
	// [30 37947 32]
}

func ExampleBPE_Encode() {
	// A toy tokenizer trained on a few words; Train writes the same
	// tokenizer.json layout as DeepSeek's.
	text := "low lower lowest newer newest wider widest"
	b, err := tokenizer.Train(slices.Values([]string{text, text}), 7+256+8, tokenizer.TrainOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ids := b.Encode("lowest<think>newer</think>")
	for i, id := range ids {
		if i > 0 {
			fmt.Print(" ")
		}
		fmt.Printf("%d:%q", id, b.IDToToken(id))
	}
	fmt.Println()
	fmt.Println(b.Decode(ids))
	// Output:
	// 264:"lo" 263:"we" 265:"st" 5:"<think>" 269:"newe" 88:"r" 6:"</think>"
	// lowest<think>newer</think>
}

func ExampleStreamDecoder() {
	// A toy vocabulary spells "🙂" with its four bytes; the decoder holds
	// them back until the character is whole.
	b, err := tokenizer.Train(slices.Values([]string{"ok ok ok"}), 7+256+4, tokenizer.TrainOptions{})
	if err != nil {
		log.Fatal(err)
	}
	d := tokenizer.NewStreamDecoder(b)
	for _, id := range b.Encode("🙂 ok") {
		fmt.Printf("%q ", d.Add(id))
	}
	fmt.Printf("%q\n", d.Flush())
	// Output:
	// "" "" "" "🙂" " ok" ""
}
