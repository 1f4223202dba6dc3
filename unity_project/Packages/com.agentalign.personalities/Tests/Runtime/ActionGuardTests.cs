// An action index outside its branch (the Inference Engine's Multinomial gives -1 when its
// uniform draw is exactly 0.0) never reaches the game.

using NUnit.Framework;

namespace AgentAlign.Tests
{
    public class ActionGuardTests
    {
        [Test]
        public void IndicesInTheBranchPass()
        {
            Assert.AreEqual(0, ActionGuard.InRange(0, 9));
            Assert.AreEqual(8, ActionGuard.InRange(8, 9));
        }

        [Test]
        public void OthersBecomeTheNoneActionAndAreCounted()
        {
            int before = ActionGuard.Replaced;
            Assert.AreEqual(ActionGuard.Fallback, ActionGuard.InRange(-1, 9));
            Assert.AreEqual(ActionGuard.Fallback, ActionGuard.InRange(3, 3));
            Assert.AreEqual(before + 2, ActionGuard.Replaced);
        }
    }
}
