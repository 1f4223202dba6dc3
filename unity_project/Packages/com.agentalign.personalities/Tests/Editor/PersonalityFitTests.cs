// A personality drives an agent only if its card's camera and branches are the agent's.

using NUnit.Framework;

namespace AgentAlign.Tests
{
    public class PersonalityFitTests
    {
        [Test]
        public void TheIslandSpecFits()
        {
            Assert.IsNull(PersonalityFit.Problem(new[] { 3, 64, 64 }, new[] { 9, 3 }, 3, 64, 64, new[] { 9, 3 }));
        }

        [Test]
        public void AnotherCameraOrBranchesDoNot()
        {
            StringAssert.Contains("camera", PersonalityFit.Problem(new[] { 3, 64, 64 }, new[] { 9, 3 }, 1, 64, 64, new[] { 9, 3 }));
            StringAssert.Contains("branches", PersonalityFit.Problem(new[] { 3, 64, 64 }, new[] { 9, 3 }, 3, 64, 64, new[] { 5 }));
            StringAssert.Contains("card", PersonalityFit.Problem(null, new[] { 9, 3 }, 3, 64, 64, new[] { 9, 3 }));
        }
    }
}
