// The switcher's rules, in the editor's test runner (Window > General > Test Runner, EditMode).
// The same rules run under Mono in the repository's CI (tests/test_unity_project.py).

using NUnit.Framework;

namespace AgentAlign.Tests
{
    public class PersonalityCycleTests
    {
        [Test]
        public void StartsWithTheFirstPlayableAndCyclesAround()
        {
            var cycle = new PersonalityCycle(3, i => true);
            Assert.AreEqual(PersonalityCycle.AsConfigured, cycle.Current);
            Assert.IsTrue(cycle.SelectFirst());
            Assert.AreEqual(0, cycle.Current);
            cycle.Next();
            cycle.Next();
            Assert.AreEqual(2, cycle.Current);
            cycle.Next();
            Assert.AreEqual(0, cycle.Current);
            cycle.Previous();
            Assert.AreEqual(2, cycle.Current);
        }

        [Test]
        public void SkipsPersonalitiesThatDoNotFit()
        {
            var cycle = new PersonalityCycle(4, i => i != 1 && i != 2);
            Assert.IsTrue(cycle.SelectFirst());
            cycle.Next();
            Assert.AreEqual(3, cycle.Current);
            Assert.IsFalse(cycle.Select(2));
            Assert.AreEqual(3, cycle.Current);
        }

        [Test]
        public void NothingPlayableChangesNothing()
        {
            var cycle = new PersonalityCycle(2, i => false);
            Assert.IsFalse(cycle.SelectFirst());
            Assert.IsFalse(cycle.Next());
            Assert.AreEqual(PersonalityCycle.AsConfigured, cycle.Current);
            Assert.IsFalse(new PersonalityCycle(0, null).Next());
        }

        [Test]
        public void FromThePersonNextIsTheFirst()
        {
            var cycle = new PersonalityCycle(3, i => true);
            cycle.Select(2);
            cycle.PlayYourself();
            Assert.IsFalse(cycle.IsPersonality);
            cycle.Next();
            Assert.AreEqual(0, cycle.Current);
        }
    }
}
