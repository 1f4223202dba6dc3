// A console program around the engine-free scripts (the package's SharedSpec, OutcomeRecords,
// PersonalityCycle, ActionGuard, PersonalityFit; the sample's IslandRules, Controls), run under
// Mono by tests/test_unity_project.py and tests/test_unity_package.py to compare the C# island
// with the Python one and drive the switcher's rules. One command per line on stdin, answers on
// stdout:
//   rules <radius> <moveSpeed> <turnRate> <maxDecisions>   start a new island
//   coast <x> <y>  /  obstacle <loX> <loY> <hiX> <hiY>  /  pad <x> <y> <radius>
//   episode <x> <y> <heading> <move>,<turn> ...   -> one line per decision:
//                                                   step x y heading outcome
//   encode <id> <step> <x> <y> <heading> <outcome> ...   -> the message bytes in hex
//   stick <x> <y>   -> move branch value;   buttons <left 0|1> <right 0|1>  -> turn branch value
//   cycle <count> <unplayable indices, comma-separated, or -> <op> ...   ops: first, next, prev,
//         person, select:<i>  -> per op: "<changed 0|1> <current>"
//   guard <action> <branch size> ...  -> the guarded actions, then the replaced count
//   fit <card C,H,W|-> <card branches|-> <channels> <height> <width> <agent branches>
//         -> "ok" or the problem

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using AgentAlign;

public static class IslandHarness
{
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    static double D(string s) { return double.Parse(s, C); }

    static int[] Ints(string s)
    {
        string[] parts = s.Split(',');
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            values[i] = int.Parse(parts[i], C);
        return values;
    }

    public static int Main()
    {
        IslandRules rules = null;
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            string[] w = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
            if (w.Length == 0)
                continue;
            switch (w[0])
            {
                case "rules":
                    rules = new IslandRules(D(w[1]), D(w[2]), D(w[3]), int.Parse(w[4], C));
                    break;
                case "coast":
                    rules.AddCoastPoint(D(w[1]), D(w[2]));
                    break;
                case "obstacle":
                    rules.AddObstacle(D(w[1]), D(w[2]), D(w[3]), D(w[4]));
                    break;
                case "pad":
                    rules.AddPad(D(w[1]), D(w[2]), D(w[3]));
                    break;
                case "episode":
                    AgentState state = IslandRules.Start(D(w[1]), D(w[2]), D(w[3]));
                    for (int i = 4; i < w.Length; i++)
                    {
                        string[] action = w[i].Split(',');
                        rules.Step(ref state, int.Parse(action[0], C), int.Parse(action[1], C));
                        Console.WriteLine(string.Format(C, "{0} {1:R} {2:R} {3:R} {4}",
                            state.Step, state.X, state.Y, state.Heading, state.Outcome));
                        if (state.Outcome != SharedSpec.Running)
                            break;
                    }
                    Console.WriteLine("end");
                    break;
                case "encode":
                    var records = new List<OutcomeRecord>();
                    for (int i = 1; i + 5 < w.Length; i += 6)
                    {
                        records.Add(new OutcomeRecord
                        {
                            AgentId = int.Parse(w[i], C), Step = int.Parse(w[i + 1], C),
                            X = float.Parse(w[i + 2], C), Y = float.Parse(w[i + 3], C),
                            Heading = float.Parse(w[i + 4], C), Outcome = int.Parse(w[i + 5], C),
                        });
                    }
                    var hex = new StringBuilder();
                    foreach (byte b in OutcomeRecords.Encode(records))
                        hex.Append(b.ToString("x2", C));
                    Console.WriteLine(hex.ToString());
                    break;
                case "stick":
                    Console.WriteLine(Controls.MoveFromAxes(D(w[1]), D(w[2])));
                    break;
                case "buttons":
                    Console.WriteLine(Controls.TurnFromButtons(w[1] == "1", w[2] == "1"));
                    break;
                case "cycle":
                    var unplayable = new HashSet<int>(w[2] == "-" ? new int[0] : Ints(w[2]));
                    var cycle = new PersonalityCycle(int.Parse(w[1], C), i => !unplayable.Contains(i));
                    var answers = new List<string>();
                    for (int i = 3; i < w.Length; i++)
                    {
                        bool changed = true;
                        if (w[i] == "first") changed = cycle.SelectFirst();
                        else if (w[i] == "next") changed = cycle.Next();
                        else if (w[i] == "prev") changed = cycle.Previous();
                        else if (w[i] == "person") cycle.PlayYourself();
                        else changed = cycle.Select(int.Parse(w[i].Substring("select:".Length), C));
                        answers.Add((changed ? "1 " : "0 ") + cycle.Current.ToString(C));
                    }
                    Console.WriteLine(string.Join(" | ", answers.ToArray()));
                    break;
                case "guard":
                    var guarded = new List<string>();
                    int before = ActionGuard.Replaced;
                    for (int i = 1; i + 1 < w.Length; i += 2)
                        guarded.Add(ActionGuard.InRange(int.Parse(w[i], C), int.Parse(w[i + 1], C)).ToString(C));
                    guarded.Add((ActionGuard.Replaced - before).ToString(C));
                    Console.WriteLine(string.Join(" ", guarded.ToArray()));
                    break;
                case "fit":
                    string problem = PersonalityFit.Problem(w[1] == "-" ? null : Ints(w[1]), w[2] == "-" ? null : Ints(w[2]),
                        int.Parse(w[3], C), int.Parse(w[4], C), int.Parse(w[5], C), Ints(w[6]));
                    Console.WriteLine(problem ?? "ok");
                    break;
                default:
                    Console.Error.WriteLine("unknown command: " + w[0]);
                    return 2;
            }
        }
        return 0;
    }
}
