package env_test

import (
	"context"
	"fmt"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/env"
)

func ExampleLookup() {
	task, err := env.Lookup("reverse:min=4,max=6")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ex := range env.Sample(task, env.Test, 1, 3) {
		fmt.Printf("%s → %s (%s)\n", ex.Prompt, ex.Answer, ex.Split)
	}
	_, err = env.Lookup("reverse:len=4")
	fmt.Println(err)
	// Output:
	// reverse 2264 → 4622 (test)
	// reverse 53631 → 13635 (test)
	// reverse 0547 → 7450 (test)
	// env: task "reverse:len=4": unknown knob "len"
}

func ExampleCountdown() {
	task := env.Countdown{Numbers: 3, MaxNumber: 50, MaxTarget: 100}
	ex := env.Sample(task, env.Train, 7, 1)[0]
	fmt.Println(ex.Prompt)
	fmt.Println(ex.Answer, ex.Verify(ex.Answer))
	fmt.Println(ex.Verify("1+2"), ex.Verify("1+"))
	// Output:
	// make 1 from 13 28 15
	// (28-13)/15 correct
	// wrong malformed
}

func ExampleExtractAnswer() {
	for _, content := range []string{
		"4+6 is 10, carry the 1.\n579",
		`So the sum is \boxed{579}.`,
		"Answer: 579\nHope that helps!",
	} {
		a, _ := env.ExtractAnswer(content)
		fmt.Println(a)
	}
	// Output:
	// 579
	// 579
	// 579
}

func ExampleSum() {
	ex := env.Sample(env.Arithmetic{Op: '+', MinDigits: 3, MaxDigits: 3}, env.Train, 1, 1)[0]
	c := env.Completion{
		Text:     "Add the digits right to left." + chat.ThinkEnd + "Answer: 1000" + chat.EOS,
		Thinking: true,
		Tokens:   350,
	}
	reward := env.Sum{{env.Outcome{}, 1}, {env.Format{}, 0.5}, {env.Length{Max: 400}, 1}}
	r, d, err := reward.Score(context.Background(), ex, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ex.Prompt, "=", ex.Answer)
	for _, p := range d.Parts {
		fmt.Printf("%-7s w=%.1f %+.2f  %s\n", p.Name, p.Weight, p.Score, p.Note)
	}
	fmt.Printf("R = %.2f\n", r)
	// Output:
	// 935+740 = 1675
	// outcome w=1.0 +0.10  wrong: answer "1000"
	// format  w=0.5 +1.00  well formed
	// length  w=1.0 -0.50  350 of 400 tokens
	// R = 0.10
}
